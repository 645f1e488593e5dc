'use strict';
/**
 * hello-node: a CloudEvents function on Knative's faas-js-runtime.
 *
 * Input: `com.example.hello.request` with JSON data `{"name": "..."}`.
 * Reply: `com.example.hello.reply` with `{"message": "Hello, <name>!", "runtime": "node vX"}`.
 * The runtime answers with the reply in binary mode; the broker (cemesh or Knative) sends it
 * back in because every delivery asks `Prefer: reply`.
 */
const { CloudEvent } = require('cloudevents');

const REPLY_TYPE = 'com.example.hello.reply';
const SOURCE = '/functions/hello-node';

/**
 * Called by faas-js-runtime for every request: `event` is the CloudEvent it decoded, or, when the
 * request was not a CloudEvent, the plain body (`context.cloudevent` is then undefined).
 */
function handle(context, event) {
  if (!context.cloudevent) {
    return { statusCode: 400, body: 'expected a CloudEvent (binary or structured mode)' };
  }
  return new CloudEvent({
    type: REPLY_TYPE,
    source: SOURCE,
    subject: event.id,
    datacontenttype: 'application/json',
    data: { message: `Hello, ${nameOf(event.data)}!`, runtime: `node ${process.version}` },
  });
}

function nameOf(data) {
  let value = data;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    value = Buffer.from(value).toString('utf8');
  }
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch {
      return value.trim() || 'world';
    }
  }
  if (value && typeof value.name === 'string' && value.name.trim()) {
    return value.name.trim();
  }
  return 'world';
}

module.exports = { handle, nameOf, REPLY_TYPE, SOURCE };
