# CPU image of the screening service (the GPU target and Kubernetes manifests come with the
# deployment work). Build: docker build -t wildlife-screening . ; run: docker run -p 8080:8080 -e API_KEYS=… wildlife-screening
FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# onnxruntime-node's CUDA download stays off (.npmrc); its CPU binaries ship in the package.
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim AS cpu
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY package.json tsconfig.json ./
COPY src/*.ts src/
COPY src/batching src/batching
COPY src/model src/model
COPY src/policy src/policy
COPY src/preprocess src/preprocess
COPY src/screening src/screening
COPY src/transport src/transport
COPY configs configs
COPY models models
USER node
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# NODE_ENV=production: the service refuses to start without API_KEYS.
CMD ["node", "--import", "tsx", "src/main.ts"]
