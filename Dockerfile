# syntax=docker/dockerfile:1
# TFTP gateway image. Multi-arch: docker buildx build --platform linux/arm64,linux/amd64 .
# Node.js 26 is the active LTS line (2026-10 to 2027-10); bump NODE_IMAGE with the next LTS.
# Pinned to the release npm start/test/bench run on (tools/node-runtime, node_modules/.bin/node):
# test/infra/runtime.test.ts keeps the two equal.
ARG NODE_IMAGE=node:26.10.0-trixie-slim

# ---- build: all dependencies, TypeScript compiled once on the build machine's own platform
FROM --platform=$BUILDPLATFORM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --omit=optional: the dev-only node binary (tools/node-runtime) is not needed here, the image has one.
RUN npm ci --ignore-scripts --omit=optional --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only, installed for the target platform
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

# ---- runtime
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production \
    TFTP_GATEWAY_LISTEN=0.0.0.0:6969 \
    TFTP_GATEWAY_PORT_MODE=single \
    TFTP_GATEWAY_HTTP_LISTEN=0.0.0.0:9464
WORKDIR /app
# package.json carries "type": "module", which dist/*.js needs.
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
# The disk cache tier's directory. The tier stays off (the image is stateless) unless
# TFTP_GATEWAY_CACHE_DIR=/var/cache/tftp-gateway (or --cache-dir) turns it on. Owned by the runtime
# user and declared a VOLUME, so what gets mounted there is writable by it: ECS on Fargate gives a
# task volume at a VOLUME path the image's owner and mode (else root 0755), and Docker does the same
# for a new named volume; a host directory bind-mounted there must be owned by uid 1000 itself.
# (`docker run` without a volume gets an anonymous one here: use --rm, or mount a named volume.)
RUN mkdir -p /var/cache/tftp-gateway && chown node:node /var/cache/tftp-gateway
VOLUME ["/var/cache/tftp-gateway"]
# The base image's unprivileged user (uid 1000); the app files above stay root-owned and read-only to it.
USER node
# TFTP, the ops endpoints (/metrics, /healthz, /readyz), and HTTP boot. HTTP boot stays off unless
# TFTP_GATEWAY_HTTP_BOOT_LISTEN is set (e.g. 0.0.0.0:8080; the CDK stack sets it on its tasks).
EXPOSE 6969/udp 9464/tcp 8080/tcp
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form, no npm or shell in between: SIGTERM reaches the gateway, which drains its sessions.
CMD ["node", "dist/cli.js", "serve"]
