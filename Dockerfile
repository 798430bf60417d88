# aijob: the module and the fetcher in one image, on the official Redis image.
#   docker build -t aijob .
#   docker run -p 6379:6379 -v aijob-data:/data aijob                # Redis with the module
#   docker run --network host aijob aijob-fetcher --redis-url redis://127.0.0.1:6379
# Or `docker compose up` (docker-compose.yml): Redis, a volume, the fetcher, health checks.
# Both stages are Debian 12 (bookworm), so the module is built against the glibc it runs on.

FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --workspace \
 && strip target/release/libaijob.so target/release/aijob-fetcher

FROM redis:7.2-bookworm
COPY --from=build /src/target/release/libaijob.so /usr/local/lib/aijob/libaijob.so
COPY --from=build /src/target/release/aijob-fetcher /usr/local/bin/aijob-fetcher
COPY docker/redis.conf /usr/local/etc/redis/redis.conf
EXPOSE 6379
CMD ["redis-server", "/usr/local/etc/redis/redis.conf", "--loadmodule", "/usr/local/lib/aijob/libaijob.so"]
