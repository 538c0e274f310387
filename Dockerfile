# syntax=docker/dockerfile:1
#
# etcd JSON gateway image.
#
#   docker build -t etcd-json-gateway .
#   docker run --rm -p 8080:8080 -e ETCD_ENDPOINTS=http://etcd:2379 etcd-json-gateway
#
# ETCD_ENDPOINTS must be set: without it the gateway tries to start an embedded etcd child process,
# which is a development convenience only (the image has no etcd binary and a root-owned, read-only
# application directory).

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript (dev dependencies available) ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# The web console's sources; the build bundles them into dist/ui.
COPY ui ./ui
RUN npm run build

# ---- runtime: production dependencies + compiled code only ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force
COPY --from=build /app/dist/src ./dist/src
# The web console at /ui/: static files, built above (UI=off leaves them unserved).
COPY --from=build /app/dist/ui ./dist/ui
# Read at run time: openapi.yaml drives the routes, package.json gives the version.
COPY openapi.yaml ./
# The lock and election service definitions, loaded at run time.
COPY proto ./proto

# Application files stay owned by root (read-only for the process); run as the image's
# unprivileged `node` user (uid/gid 1000).
USER node

ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080

# No curl in slim images: probe with node itself. /healthz says the process answers; whether etcd
# does is /readyz's business (an etcd outage should not make the container unhealthy).
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"

CMD ["node", "dist/src/main.js"]
