//! Insights: the patterns the domain finds in a person's last weeks
//! (`glucosync_domain::insights`), each with its evidence. Always available: no external
//! service is involved.

use axum::extract::State;
use axum::Json;
use glucosync_domain::insights::{self, PatternKind, Severity};
use glucosync_domain::{GlucoseMgdl, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::ai::AiError;
use crate::api::reports::{cgm_points, context, period_treatments, ReportContext};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::json::{ApiJson, ApiQuery};
use crate::state::{now_ms, AppState};
use axum::response::Response;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PatternParams {
    /// Whose data: a person who shares with the caller (default: the caller).
    pub person: Option<i64>,
    /// The end of the weeks looked at (RFC 3339); default: now.
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// `mg/dL` or `mmol/L`, for the text and the values; default: the person's display unit.
    #[param(pattern = r"^(mg/dL|mmol/L)$")]
    pub unit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PatternsReport {
    /// The end of the period looked at; the time-of-day rules look at its last 14 days, the
    /// weekday rule at 28.
    pub to: String,
    pub time_zone: String,
    pub unit: glucosync_domain::GlucoseUnit,
    /// The attention-worthy first.
    pub patterns: Vec<PatternOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PatternOut {
    pub kind: PatternKind,
    pub severity: Severity,
    pub title: String,
    pub detail: String,
    pub evidence: Vec<EvidenceOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceOut {
    /// The person's local date.
    pub date: String,
    pub from: String,
    pub to: String,
    pub note: String,
    pub readings: Vec<EvidenceReadingOut>,
    pub treatment_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EvidenceReadingOut {
    pub time: String,
    /// In the report's unit.
    pub value: f64,
}

/// Patterns in the last weeks of a person's data: recurring lows or highs by time of day and
/// weekday, rises after meals, night lows after evening insulin, overnight drift, sensor gaps
/// and the week-over-week comparison. Deterministic rules (docs/insights.md); each pattern
/// carries the days and readings that show it. Observations to discuss with a care team,
/// never dosing advice.
#[utoipa::path(get, path = "/insights/patterns", tag = "insights", params(PatternParams),
    responses((status = 200, body = PatternsReport), (status = 404, body = crate::error::Problem),
              (status = 422, body = crate::error::Problem)))]
pub async fn patterns(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<PatternParams>,
) -> ApiResult<Json<PatternsReport>> {
    let ReportContext {
        subject,
        tz,
        unit,
        target: (low_mgdl, high_mgdl),
    } = context(
        &state,
        &caller,
        "insights.patterns",
        params.person,
        params.unit.as_deref(),
    )
    .await?;
    let to_ms = match params.to.as_deref() {
        Some(t) => crate::api::parse_time_param("to", t)?,
        None => now_ms(),
    };
    let from_ms = to_ms - insights::WEEKDAY_WINDOW_DAYS * DAY_MS;
    let points = cgm_points(&state, subject, from_ms, to_ms).await?;
    let treatments = period_treatments(&state, subject, from_ms, to_ms).await?;
    let found = insights::patterns(&insights::Input {
        points: &points,
        treatments: &treatments,
        tz: &tz,
        now_ms: to_ms,
        low_mgdl,
        high_mgdl,
        unit,
    });
    let value = |mgdl: f64| GlucoseMgdl::from_stored(mgdl).display(unit);
    Ok(Json(PatternsReport {
        to: Timestamp::from_utc_ms(to_ms).to_rfc3339_utc(),
        time_zone: tz.name().to_owned(),
        unit,
        patterns: found
            .into_iter()
            .map(|p| PatternOut {
                kind: p.kind,
                severity: p.severity,
                title: p.title,
                detail: p.detail,
                evidence: p
                    .evidence
                    .into_iter()
                    .map(|e| EvidenceOut {
                        date: e.date,
                        from: e.from,
                        to: e.to,
                        note: e.note,
                        readings: e
                            .readings
                            .iter()
                            .map(|r| EvidenceReadingOut {
                                time: Timestamp::from_utc_ms(r.time).to_rfc3339_utc(),
                                value: value(r.mgdl),
                            })
                            .collect(),
                        treatment_ids: e.treatment_ids,
                    })
                    .collect(),
            })
            .collect(),
    }))
}

// ---------------------------------------------------------------- AI summaries and questions

/// The instructions every AI request starts with. The reply is checked for insulin amounts
/// all the same (`insights::mentions_insulin_dose`).
const SYSTEM_PROMPT: &str = "You are the assistant in GlucoSync, a diabetes data app. You \
explain summaries of a person's continuous glucose monitor data to them in plain, kind, brief \
language. You receive only aggregates and patterns that fixed rules found, never raw data. \
Never give dosing advice: never suggest or state amounts of insulin, doses, ratios, correction \
factors, basal rates, or changes to medication or pump settings, and never write a number \
followed by units of insulin. If asked for a dose or a setting, say that such decisions \
belong to their care team. Do not diagnose. Use the glucose unit given. Suggest discussing \
notable patterns with their care team.";

/// Shown instead of a reply that named an amount of insulin.
const DOSE_WITHHELD: &str = "The answer mentioned an amount of insulin, so it is not shown: \
GlucoSync never gives dosing advice. Please discuss doses and settings with your care team.";

const MAX_QUESTION_CHARS: usize = 500;

#[derive(Debug, Serialize, ToSchema)]
pub struct AiStatus {
    /// The installation has an AI service configured.
    pub available: bool,
    /// The person agreed to use it (settings: `ai_insights`).
    pub opted_in: bool,
    /// Summaries and questions per day.
    pub daily_limit: u32,
}

/// Whether AI summaries and questions can be used by the caller.
#[utoipa::path(get, path = "/insights/ai", tag = "insights",
    responses((status = 200, body = AiStatus)))]
pub async fn ai_status(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<AiStatus>> {
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    Ok(Json(AiStatus {
        available: state.ai.is_some(),
        opted_in: user.settings.ai_insights,
        daily_limit: state.config.openai_daily_limit,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AiAnswer {
    pub text: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub generated_at: String,
    /// True when the reply named an amount of insulin and was replaced by a notice.
    pub withheld: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionRequest {
    /// Up to 500 characters. Email addresses and long numbers are removed before it is sent.
    #[schema(min_length = 1, max_length = 500)]
    pub question: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Stream the reply as server-sent events (`delta` events with text, then `done` with the
    /// usage; `withheld` if it named a dose; `error` if the service broke off) instead of one
    /// JSON answer.
    pub stream: Option<bool>,
}

/// A short narrative of the caller's last week against the week before, written by the
/// configured AI service from aggregates and detected patterns only (opt-in; counts against the
/// daily limit). Informational, never dosing advice.
#[utoipa::path(post, path = "/insights/summary", tag = "insights", params(StreamParams),
    responses((status = 200, body = AiAnswer, description = "JSON, or text/event-stream with stream=true"),
              (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 429, body = crate::error::Problem),
              (status = 503, body = crate::error::Problem)))]
pub async fn summary(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<StreamParams>,
) -> ApiResult<Response> {
    let message = prepare(
        &state,
        &caller,
        "Write a short summary (at most 150 words) of this person's last 7 days compared with \
         the 7 days before, from these figures and patterns.",
        None,
    )
    .await?;
    reply(&state, &message, params.stream.unwrap_or(false)).await
}

/// Answers a question about the caller's data from aggregates and detected patterns only
/// (opt-in; counts against the daily limit). Informational, never dosing advice.
#[utoipa::path(post, path = "/insights/ask", tag = "insights", request_body = QuestionRequest, params(StreamParams),
    responses((status = 200, body = AiAnswer, description = "JSON, or text/event-stream with stream=true"),
              (status = 403, body = crate::error::Problem),
              (status = 404, body = crate::error::Problem), (status = 422, body = crate::error::Problem),
              (status = 429, body = crate::error::Problem), (status = 503, body = crate::error::Problem)))]
pub async fn ask(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(params): ApiQuery<StreamParams>,
    ApiJson(req): ApiJson<QuestionRequest>,
) -> ApiResult<Response> {
    let question = req.question.trim();
    if question.is_empty() || question.chars().count() > MAX_QUESTION_CHARS {
        return Err(ApiError::validation(
            glucosync_domain::ValidationError::new(
                "question",
                format!("ask a question of 1 to {MAX_QUESTION_CHARS} characters"),
            ),
        ));
    }
    let message = prepare(
        &state,
        &caller,
        "Answer this person's question from these figures and patterns only. If they do not \
         answer it, say so.",
        Some(question),
    )
    .await?;
    reply(&state, &message, params.stream.unwrap_or(false)).await
}

/// Removes what could identify someone from a typed question: email addresses, numbers of
/// six digits or more (phone and record numbers, also written in groups: every digit group
/// next to another counts), and the words of `own` (the person's email and name). Names of
/// other people cannot be recognised: the app says not to type them.
pub fn scrub(text: &str, own: &[&str]) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let digits = |w: &str| w.chars().filter(|c| c.is_numeric()).count();
    let bare = |w: &str| {
        w.trim_matches(|c: char| !c.is_alphanumeric() && c != '@')
            .to_lowercase()
    };
    words
        .iter()
        .enumerate()
        .map(|(i, w)| {
            // A run of digit groups ("0171 234 567") counts as one number.
            let mut run = digits(w);
            if run > 0 {
                let mut j = i;
                while j > 0 && digits(words[j - 1]) > 0 {
                    j -= 1;
                    run += digits(words[j]);
                }
                let mut k = i + 1;
                while k < words.len() && digits(words[k]) > 0 {
                    run += digits(words[k]);
                    k += 1;
                }
            }
            let b = bare(w);
            if w.contains('@')
                || run >= 6
                || own.iter().any(|o| o.len() > 1 && b == o.to_lowercase())
            {
                "[removed]"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks that the caller may use the AI service now (configured, consent, daily limit) and
/// builds the message: the instruction and the person's aggregates.
/// A `question` is added after the instruction, scrubbed of the person's identifiers.
async fn prepare(
    state: &AppState,
    caller: &Caller,
    instruction: &str,
    question: Option<&str>,
) -> ApiResult<String> {
    // The person in the app: API tokens (uploaders, services) cannot spend the daily quota.
    caller.require_session()?;
    // Configured at all (404 otherwise).
    state
        .ai
        .as_deref()
        .ok_or(ApiError::NotFound("AI insights"))?;
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthenticated)?;
    if !user.settings.ai_insights {
        return Err(ApiError::forbidden(
            "ai_not_opted_in",
            "AI summaries send aggregates of your data (never your name, email or notes) to an \
             AI service. Turn them on in Settings first.",
        ));
    }
    let now = now_ms();
    let day = now / DAY_MS;
    match state
        .limiter
        .hit(
            &format!("ai:{}:{day}", caller.user_id),
            state.config.openai_daily_limit,
            std::time::Duration::from_secs(86_400),
        )
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?
    {
        glucosync_shared_state::RateDecision::Allowed { .. } => {}
        glucosync_shared_state::RateDecision::Limited { .. } => {
            let retry_after_secs = ((day + 1) * DAY_MS - now) / 1000;
            return Err(ApiError::RateLimited {
                retry_after_secs: retry_after_secs.max(1) as u64,
            });
        }
    }
    let tz: chrono_tz::Tz = user.settings.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let data = aggregates(state, &user, &tz, now).await?;
    match question {
        Some(question) => {
            let own: Vec<&str> = std::iter::once(user.email.as_str())
                .chain(
                    user.display_name
                        .as_deref()
                        .into_iter()
                        .flat_map(str::split_whitespace),
                )
                .collect();
            Ok(format!(
                "{instruction}\n\nQuestion: {}\n\n{data}",
                scrub(question, &own)
            ))
        }
        None => Ok(format!("{instruction}\n\n{data}")),
    }
}

fn unavailable(e: AiError) -> ApiError {
    tracing::warn!(error = %e, "AI request failed");
    match e {
        AiError::CircuitOpen | AiError::RateLimited | AiError::Timeout => {
            ApiError::Unavailable("the AI service is busy or failing; try again later".into())
        }
        AiError::Upstream(_) => {
            ApiError::Unavailable("the AI service could not answer; try again later".into())
        }
    }
}

/// The reply to `message`: one JSON answer, or streamed (server-sent events). Either way a
/// reply that names an amount of insulin is not shown; streamed, the text goes out a sentence
/// at a time, each checked with everything before it, so a dose never reaches the screen.
async fn reply(state: &AppState, message: &str, stream: bool) -> ApiResult<Response> {
    use axum::response::IntoResponse;
    let ai = state.ai.clone().ok_or(ApiError::NotFound("AI insights"))?;
    let now = now_ms();
    if !stream {
        let completion = ai
            .complete(SYSTEM_PROMPT, message, &state.metrics)
            .await
            .map_err(unavailable)?;
        let withheld = insights::mentions_insulin_dose(&completion.text);
        if withheld {
            state.metrics.ai_replies_withheld_total.inc();
        }
        return Ok(Json(AiAnswer {
            text: if withheld {
                DOSE_WITHHELD.to_owned()
            } else {
                completion.text
            },
            model: completion.model,
            prompt_tokens: completion.prompt_tokens,
            completion_tokens: completion.completion_tokens,
            generated_at: Timestamp::from_utc_ms(now).to_rfc3339_utc(),
            withheld,
        })
        .into_response());
    }
    use crate::ai::StreamEvent;
    use axum::response::sse::{Event, KeepAlive, Sse};
    let mut pieces = ai
        .stream(SYSTEM_PROMPT, message, &state.metrics)
        .await
        .map_err(unavailable)?;
    let metrics = state.metrics.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let json_event =
            |name: &str, v: serde_json::Value| Event::default().event(name).data(v.to_string());
        let mut shown = String::new();
        let mut pending = String::new();
        // Sends `chunk` unless, with what was shown, it names a dose: then the notice, and the end.
        let emit = async |chunk: String, shown: &mut String| -> bool {
            if insights::mentions_insulin_dose(&format!("{shown}{chunk}")) {
                metrics.ai_replies_withheld_total.inc();
                let _ = tx
                    .send(json_event(
                        "withheld",
                        serde_json::json!({"text": DOSE_WITHHELD}),
                    ))
                    .await;
                return false;
            }
            shown.push_str(&chunk);
            tx.send(json_event("delta", serde_json::json!({"text": chunk})))
                .await
                .is_ok()
        };
        while let Some(event) = pieces.recv().await {
            match event {
                StreamEvent::Text(piece) => {
                    pending.push_str(&piece);
                    if let Some(end) = pending.rfind(['.', '!', '?', '\n']) {
                        let chunk: String = pending.drain(..=end).collect();
                        if !emit(chunk, &mut shown).await {
                            return;
                        }
                    }
                }
                StreamEvent::Done {
                    model,
                    prompt_tokens,
                    completion_tokens,
                } => {
                    if !pending.is_empty() && !emit(std::mem::take(&mut pending), &mut shown).await
                    {
                        return;
                    }
                    let _ = tx
                        .send(json_event(
                            "done",
                            serde_json::json!({
                                "model": model,
                                "prompt_tokens": prompt_tokens,
                                "completion_tokens": completion_tokens,
                                "generated_at": Timestamp::from_utc_ms(now).to_rfc3339_utc(),
                                "withheld": false,
                            }),
                        ))
                        .await;
                    return;
                }
                StreamEvent::Broken(e) => {
                    tracing::warn!(error = %e, "the AI reply broke off");
                    let _ = tx
                        .send(json_event(
                            "error",
                            serde_json::json!({"detail": "The AI service stopped answering; try again later."}),
                        ))
                        .await;
                    return;
                }
            }
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// What the AI service is told about the person: aggregates of the last two weeks in their
/// unit and the patterns found. No name, email, id, date of birth, notes or single readings;
/// insulin only as how often it is logged (amounts would invite dose talk).
async fn aggregates(
    state: &AppState,
    user: &glucosync_store::User,
    tz: &chrono_tz::Tz,
    now: i64,
) -> ApiResult<String> {
    use glucosync_domain::treatments::{InsulinType, TreatmentDetail};
    use std::fmt::Write;
    let unit = user.settings.display_unit;
    let from = now - insights::WINDOW_DAYS * DAY_MS;
    let points = cgm_points(
        state,
        user.id,
        now - insights::WEEKDAY_WINDOW_DAYS * DAY_MS,
        now,
    )
    .await?;
    let treatments = period_treatments(state, user.id, from, now).await?;
    let g = |mgdl: f64| {
        let v = GlucoseMgdl::from_stored(mgdl).display(unit);
        format!("{v} {}", unit.as_str())
    };
    let mut out = format!("Glucose unit: {}.\n", unit.as_str());
    let week = 7 * DAY_MS;
    for (label, a, b) in [
        ("Last 7 days", now - week, now),
        ("The 7 days before", now - 2 * week, now - week),
    ] {
        let slice: Vec<_> = points
            .iter()
            .filter(|p| (a..b).contains(&p.utc_ms))
            .map(|p| p.mgdl)
            .collect();
        if slice.len() < 288 {
            let _ = writeln!(out, "{label}: too little CGM data.");
            continue;
        }
        let bands = glucosync_domain::analytics::bands(&slice);
        let mean = glucosync_domain::analytics::mean(&slice).unwrap_or_default();
        let cv = glucosync_domain::analytics::sd(&slice).map_or(0.0, |sd| 100.0 * sd / mean);
        let _ = writeln!(
            out,
            "{label}: sensor coverage {:.0} %, time in range 70-180 mg/dL {:.0} %, below 70 {:.1} %, \
             below 54 {:.1} %, above 180 {:.0} %, above 250 {:.0} %, mean {}, GMI {:.1} %, CV {:.0} %.",
            100.0 * slice.len() as f64 / 2016.0,
            bands.in_range,
            bands.below_70(),
            bands.very_low,
            bands.above_180(),
            bands.very_high,
            g(mean),
            glucosync_domain::analytics::gmi_percent(mean),
            cv,
        );
    }
    let recent: Vec<_> = points
        .iter()
        .filter(|p| p.utc_ms >= from)
        .copied()
        .collect();
    let hourly: Vec<String> = glucosync_domain::statistics::hourly(&recent, tz)
        .iter()
        .enumerate()
        .filter_map(|(h, s)| s.as_ref().map(|s| format!("{h:02}h {}", g(s.median))))
        .collect();
    if !hourly.is_empty() {
        let _ = writeln!(
            out,
            "Median glucose by local hour, last 14 days: {}.",
            hourly.join(", ")
        );
    }
    let days = insights::WINDOW_DAYS as f64;
    let boluses = treatments
        .iter()
        .filter(|t| {
            t.time.utc_ms >= from
                && matches!(
                    t.detail,
                    TreatmentDetail::Insulin {
                        insulin_type: InsulinType::Bolus,
                        ..
                    }
                )
        })
        .count();
    let carbs: f64 = treatments
        .iter()
        .filter(|t| t.time.utc_ms >= from)
        .filter_map(|t| match t.detail {
            TreatmentDetail::Carbs { grams } => Some(grams),
            _ => None,
        })
        .sum();
    let _ = writeln!(
        out,
        "Logged in the last 14 days: mealtime insulin {:.1} times a day, carbohydrates {:.0} g a day.",
        boluses as f64 / days,
        carbs / days
    );
    let found = insights::patterns(&insights::Input {
        points: &points,
        treatments: &treatments,
        tz,
        now_ms: now,
        low_mgdl: user.settings.target_low_mgdl,
        high_mgdl: user.settings.target_high_mgdl,
        unit,
    });
    if found.is_empty() {
        out.push_str("Patterns found: none.\n");
    } else {
        out.push_str("Patterns found:\n");
        for p in found {
            let _ = writeln!(out, "- {}: {}", p.title, p.detail);
        }
    }
    Ok(out)
}
