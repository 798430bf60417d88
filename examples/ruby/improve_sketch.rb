# The Rails improve-sketch flow on aijob with redis-rb: cache or enqueue, then status polling.
#
# Before (the seed): Rails.cache.read(sha256("png:svg:hints")); on a miss the mutation SETEXes
# improve_sketch:status:<uuid> "queued" and enqueues a Sidekiq ImproveSketchJob, which SETEXes
# status, result and error keys at each step; improveSketchStatus reads three keys. A worker
# that dies mid-job loses it (BRPOP), and identical requests make one Gemini call each.
#
# After: the mutation is one CACHE.GETORQUEUE; the status query is one JOB.GET. The worker is
# aijob-fetcher (started by `make run`): no Sidekiq, no status keys.
#
# Run against `make run`:  ruby examples/ruby/improve_sketch.rb
# Each step prints one JSON line.

require "json"
require "redis"

module ImproveSketch
  QUEUE = "improve_sketch"
  CACHE_TTL_MS = 7 * 24 * 3600 * 1000 # the seed's 7 days
  RETENTION_MS = 3600 * 1000          # the seed's 1-hour status keys

  module_function

  def redis
    @redis ||= Redis.new(url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379"))
  end

  # Mutations::ImproveSketch#resolve(async: true): the result when cached, else a request id.
  def enqueue(png_base64:, svg: nil, hints: nil)
    payload = {
      provider: "echo", # "gemini" in production: the fetcher calls it
      model: "gemini-2.5-flash",
      request: { text: "Improve this sketch. Hints: #{hints}", delay_ms: 500 }
    }
    kind, id, result = redis.call(
      "CACHE.GETORQUEUE", QUEUE, "PAYLOAD", payload.to_json,
      "CACHETTL", CACHE_TTL_MS, "RETENTION", RETENTION_MS,
      "KEY", png_base64, svg.to_s, hints.to_s # length-prefixed parts: no "a:b"+"" vs "a"+":b" collision
    )
    if kind == "hit"
      { result: JSON.parse(result), request_id: nil, errors: [] }
    else
      { result: nil, request_id: id, errors: [] }
    end
  end

  # Types::QueryType#improve_sketch_status(request_id:)
  def status(request_id)
    fields = redis.call("JOB.GET", QUEUE, request_id)
    return { request_id: request_id, status: "not_found", result: nil, error: nil } if fields.nil?

    job = Hash[*fields] # RESP2: a flat field/value array
    {
      request_id: request_id,
      status: job["status"],
      result: job["status"] == "done" ? JSON.parse(job["result"]) : nil,
      error: job["status"] == "error" ? { message: job["error"], class: job["error_class"] } : nil
    }
  end
end

def emit(fields)
  puts fields.to_json
  $stdout.flush
end

sketch = { png_base64: "iVBORw0KGgo...", svg: "<svg><path d='M0 0L10 10'/></svg>",
           hints: ENV.fetch("SKETCH_HINTS", "make it cleaner (#{Process.clock_gettime(Process::CLOCK_REALTIME, :nanosecond)})") }

first = ImproveSketch.enqueue(**sketch)
emit(step: "mutation", **first)
exit 0 if first[:result]

# The frontend polls improveSketchStatus until the request is done.
request_id = first[:request_id]
deadline = Time.now + Float(ENV.fetch("TIMEOUT", "30"))
last = nil
loop do
  st = ImproveSketch.status(request_id)
  emit(step: "status", request_id: request_id, status: st[:status]) if st[:status] != last
  last = st[:status]
  if %w[done error canceled not_found].include?(st[:status])
    emit(step: "finished", **st)
    exit 1 unless st[:status] == "done"
    break
  end
  if Time.now > deadline
    emit(step: "timeout", request_id: request_id, status: st[:status],
         hint: "no worker finished the job: is the fetcher running? (`make run` starts it)")
    exit 1
  end
  sleep 0.1
end

emit(step: "mutation-again", **ImproveSketch.enqueue(**sketch))
