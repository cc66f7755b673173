# bulwark-server image (used by docker-compose.yml). Built from the workspace; zstd-napi compiles
# its bundled zstd, hence the build tools.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ e2fsprogs util-linux ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && npm install -g pnpm@10.34.9
WORKDIR /opt/bulwark
COPY . .
RUN pnpm install --frozen-lockfile && pnpm build
ENV NODE_ENV=production BULWARK_HTTP_HOST=0.0.0.0 BULWARK_DATA_DIR=/var/lib/bulwark
EXPOSE 8080 8443
CMD ["node", "apps/server/dist/main.js"]
