//! Email over SMTP: invites, and alerts for those who choose email. Sent in the background
//! (alerts from the outbox, invites from a task of their own), never on a request's path.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::Config;

/// Per SMTP command; under the outbox's claim hold (15 s), so that a slow server does not
/// get a second copy from another replica.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Why a message was not sent; `permanent` when trying again cannot help (a refused address).
#[derive(Debug, Clone)]
pub struct MailError {
    pub permanent: bool,
    pub message: String,
}

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// The mailer `config` describes; `None` when no mail server is configured.
    pub fn from_config(config: &Config) -> Result<Option<Mailer>, String> {
        let Some(url) = &config.smtp_url else {
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(url.expose())
            .map_err(|_| format!("smtp_url `{url}` is not a URL"))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("smtp_url `{url}` names no host"))?
            .trim_matches(['[', ']'])
            .to_owned();
        let implicit = parsed.scheme() == "smtps";
        let plain = parsed.query_pairs().any(|(k, v)| k == "tls" && v == "none");
        let port = parsed.port().unwrap_or(if implicit { 465 } else { 587 });
        let mut tls = TlsParameters::builder(host.clone());
        if let Some(path) = &config.smtp_ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("smtp_ca_file {}: {e}", path.display()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("smtp_ca_file {}: {e}", path.display()))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| format!("TLS for {host}: {e}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(TIMEOUT))
            .tls(match (implicit, plain) {
                (true, _) => Tls::Wrapper(tls),
                (false, true) => Tls::None,
                (false, false) => Tls::Required(tls),
            });
        if !parsed.username().is_empty() {
            builder = builder.credentials(Credentials::new(
                percent_decode(parsed.username()),
                percent_decode(parsed.password().unwrap_or("")),
            ));
        }
        let from = config
            .smtp_from
            .parse()
            .map_err(|_| format!("smtp_from `{}` is not an address", config.smtp_from))?;
        Ok(Some(Mailer {
            transport: builder.build(),
            from,
        }))
    }

    /// Sends a plain-text message to `to`. `message_id` (without angle brackets), when given,
    /// names the message: a copy sent again (after a crash between sending and recording)
    /// carries the same id, so mail software can tell it is the same message.
    #[tracing::instrument(level = "debug", name = "smtp send", skip_all, fields(otel.kind = "client"))]
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        text: String,
        message_id: Option<String>,
    ) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError {
            permanent: true,
            message: "not a mailbox address".into(),
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(message_id.map(|id| format!("<{id}>")))
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|e| MailError {
                permanent: true,
                message: e.to_string(),
            })?;
        self.transport
            .send(message)
            .await
            .map(drop)
            .map_err(|e| MailError {
                // 5xx replies are refusals; anything else (4xx, network, TLS) may pass later.
                permanent: e.is_permanent(),
                message: if e.is_permanent() {
                    "refused by the mail server".into()
                } else if e.is_transient() {
                    "the mail server asked to try later".into()
                } else {
                    "the mail server is unreachable".into()
                },
            })
    }
}

/// `%xx` escapes of a URL's user and password (an `@` in a password is written `%40`);
/// malformed escapes stay as they are.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_escapes_in_credentials_are_decoded() {
        assert_eq!(percent_decode("p%40ss%3Aword"), "p@ss:word");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%4"), "end%4");
    }
}
