-- wrk script for the intake benchmark: every request a new task_id (and customer).
-- wrk -s bench/intake.lua URL -- <prefix> <path> <api key>
local threads = {}
local counter = 0
local template = '{"task_id":"%s","type":"send_file_after_reply","customer":{"id":"c_%s","name":"小明"},'
  .. '"acc_id":"shop_001","trigger":{"type":"specified_customer_reply","customer_id":"c_%s","keyword":"好的"},'
  .. '"action":{"type":"send_file","file_url":"https://example.com/a.zip","message":"这是您要的文件"},'
  .. '"priority":"normal","created_by":"bench"}'

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1]
  path = args[2]
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-API-Key"] = args[3]
end

function request()
  counter = counter + 1
  local id = string.format("%s_%d_%d", prefix, tid, counter)
  return wrk.format("POST", path, nil, string.format(template, id, id, id))
end

function done(summary, latency, requests)
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
