// Payloads and results of exact sizes (valid JSON, the shape the fetcher uses).

'use strict';

/** A JSON object of exactly `size` bytes: `head` plus a padded text field. */
function sized(head, size) {
  const open = `${head.slice(0, -1)},"text":"`;
  const close = '"}';
  const pad = size - open.length - close.length;
  if (pad < 0) throw new Error('payload head longer than its size');
  return open + 'x'.repeat(pad) + close;
}

const REQUEST = sized('{"provider":"echo","model":"bench-1","request":{"temperature":0.2}}', 256);
const PAYLOAD_1K = sized('{"provider":"echo","model":"bench-1","request":{"temperature":0.2}}', 1024);
const RESULT_1K = sized('{"provider":"echo","model":"bench-1","usage":{"input_tokens":12,"output_tokens":250}}', 1024);
const RESULT_100K = sized('{"provider":"echo","model":"bench-1"}', 100 * 1024);

module.exports = { REQUEST, PAYLOAD_1K, RESULT_1K, RESULT_100K };
