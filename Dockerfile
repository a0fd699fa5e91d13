# syntax=docker/dockerfile:1
# check=error=true

# The worker image: one static Go binary, git, the pinned Claude Code CLI and
# Node.js (the agent's tools and the customer's Astro dev server run on it).
#
#   docker build -t claude-code-astro-worker .
#
# Base images are pinned to exact versions. Bump them together with
# infra/README.md (image size estimate) and the tests in infra/.

# ---------------------------------------------------------------------------
# Build stage: the worker binary. CGO is off, so the binary is static and does
# not care which Debian the runtime stage uses. The tag nolocal leaves the
# embedded AWS emulator (for `worker local`) out of the production binary.
FROM golang:1.26.8-trixie AS build
WORKDIR /src
# No `go mod download`: it would fetch every test-only module too; go build
# fetches what the binary imports into the cache mount.
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -tags nolocal -o /out/worker ./cmd/worker

# ---------------------------------------------------------------------------
# Runtime stage.
# Node 22, not 20: Node 20 reached end of life in April 2026, and Astro 7 and
# the newer Claude Code CLI releases declare Node 22. Node 22 is maintained
# (LTS) until April 2027. slim: no compilers or docs; what the site's own
# `npm ci` needs (prebuilt binaries of esbuild, rollup, sharp) runs on glibc.
FROM node:22.23.3-trixie-slim AS runtime

# git: the workspace (clone, thread branches, commits, push).
# ca-certificates: TLS to git hosts, the Anthropic API and AWS.
# openssh-client: for ssh:// and git@host:path repositories.
# tini: PID 1 that forwards SIGTERM to the worker and reaps the zombies the
# agent's and Astro's child processes leave behind. On ECS the task definition
# also sets initProcessEnabled; tini -s still works as a subreaper under it.
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates \
        git \
        openssh-client \
        tini \
    && rm -rf /var/lib/apt/lists/*

# The Claude Code CLI, pinned in exactly one place: internal/agent/claude-code/
# (package.json and package-lock.json).
# npm ci runs the package's postinstall script, which hard-links the native
# binary of this platform (from the optional dependency
# @anthropic-ai/claude-code-linux-x64 or -linux-arm64) over bin/claude.exe.
# `claude --version` fails the build if that script was skipped (for example
# with --ignore-scripts), instead of shipping a stub that fails at run time.
WORKDIR /opt/tools
COPY internal/agent/claude-code/package.json internal/agent/claude-code/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --no-audit --no-fund \
    && HOME=/tmp/claude-check /opt/tools/node_modules/.bin/claude --version \
    && rm -rf /tmp/claude-check

# No USER: the worker starts as root and confines itself at once (README,
# "Security"): it keeps only CAP_SETUID, CAP_SETGID, CAP_CHOWN, CAP_FOWNER and
# CAP_KILL, sets no_new_privs, becomes not dumpable, and runs every tenant's
# processes (npm, the Astro dev server, the Claude Code CLI, git on the
# working tree) under the tenant's own uid. /workspace is root's, mode 0711:
# tenants pass through it to their own directories and cannot list it.
RUN mkdir -p /workspace && chmod 0711 /workspace

COPY --from=build /out/worker /usr/local/bin/worker

# Defaults from CONTRACT.md section 5. Queue URLs and secrets are not baked in:
# JOB_QUEUE_URL and RESPONSE_QUEUE_URL (required), ANTHROPIC_API_KEY_SECRET_ID
# and GITHUB_TOKEN_SECRET_ID come from the task definition or compose file.
# NODE_ENV is left unset on purpose: the site's `npm ci` must install its
# devDependencies (astro itself is often one).
ENV WORKSPACE_PATH=/workspace \
    HTTP_ADDR=:8080 \
    ASTRO_PORT=4321 \
    ASTRO_DEV_MODE=true \
    AUTO_SHUTDOWN_MINUTES=5 \
    CLAUDE_BIN=/opt/tools/node_modules/.bin/claude \
    CLAUDE_MAX_TURNS=30 \
    JOB_TIMEOUT=15m \
    MAX_CONCURRENT_USERS=2 \
    LOG_LEVEL=info \
    LOG_FORMAT=json \
    ASTRO_TELEMETRY_DISABLED=1 \
    ASTRO_DISABLE_UPDATE_CHECK=true \
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \
    PATH=/opt/tools/node_modules/.bin:${PATH}

WORKDIR /workspace

# Health and the live preview (HTTP and the Vite HMR WebSocket) share one port.
# The Astro dev server itself listens on 127.0.0.1:ASTRO_PORT only.
EXPOSE 8080

# No curl in the image: the worker checks its own GET /health.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/worker", "healthcheck"]

ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/usr/local/bin/worker"]
CMD ["run"]
