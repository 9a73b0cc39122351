# syntax=docker/dockerfile:1
# MainWebsite: the static site (site/), served by unprivileged nginx (uid 101, port 8080).
# Build from the repository root: docker build -f deploy/images/mainwebsite.Dockerfile .

FROM nginxinc/nginx-unprivileged:1.28.0-alpine
# Rendered once here so the root filesystem can be read-only at run time (see newclient).
COPY deploy/images/nginx/headers.conf /etc/nginx/glucosync/headers.conf
COPY deploy/images/nginx/mainwebsite.conf.template /tmp/default.conf.template
USER 0
# The single quotes are envsubst's list of variables, not a shell expansion.
# hadolint ignore=SC2016
RUN LISTEN=8080 SITE_ROOT=/usr/share/nginx/site CONF_DIR=/etc/nginx/glucosync \
      envsubst '${LISTEN} ${SITE_ROOT} ${CONF_DIR}' </tmp/default.conf.template >/etc/nginx/conf.d/default.conf \
    && rm /tmp/default.conf.template \
    && rm -rf /usr/share/nginx/html
COPY site/ /usr/share/nginx/site/
USER 101
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
