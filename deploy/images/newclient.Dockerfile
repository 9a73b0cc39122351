# syntax=docker/dockerfile:1
# NewClient: the PWA, served by unprivileged nginx (uid 101, port 8080) under /app/.
# Build from the repository root: docker build -f deploy/images/newclient.Dockerfile .

FROM node:20.19.5-bookworm-slim AS build
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

FROM nginxinc/nginx-unprivileged:1.28.0-alpine
# The configuration is rendered here, once: at run time nothing under /etc/nginx is written, so
# the root filesystem can be read-only (nginx's pid and temp files go to /tmp, an emptyDir).
COPY deploy/images/nginx/headers.conf /etc/nginx/glucosync/headers.conf
COPY deploy/images/nginx/newclient.conf.template /tmp/default.conf.template
USER 0
# The single quotes are envsubst's list of variables, not a shell expansion.
# hadolint ignore=SC2016
RUN LISTEN=8080 WEB_ROOT=/usr/share/nginx/app CONF_DIR=/etc/nginx/glucosync \
      envsubst '${LISTEN} ${WEB_ROOT} ${CONF_DIR}' </tmp/default.conf.template >/etc/nginx/conf.d/default.conf \
    && rm /tmp/default.conf.template \
    && rm -rf /usr/share/nginx/html
COPY --from=build /src/web/dist /usr/share/nginx/app
USER 101
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/app/"]
