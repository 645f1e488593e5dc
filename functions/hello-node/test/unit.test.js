'use strict';
// Unit tests: call handle() as faas-js-runtime would, without a server.
const test = require('node:test');
const assert = require('node:assert/strict');
const { CloudEvent } = require('cloudevents');
const { handle, nameOf, REPLY_TYPE } = require('../index.js');

function request(data) {
  return new CloudEvent({
    type: 'com.example.hello.request',
    source: '/test',
    id: 'req-1',
    datacontenttype: 'application/json',
    data,
  });
}

test('replies with a greeting event', () => {
  const event = request({ name: 'Ada' });
  const reply = handle({ cloudevent: event }, event);
  assert.equal(reply.type, REPLY_TYPE);
  assert.equal(reply.subject, 'req-1');
  assert.equal(reply.data.message, 'Hello, Ada!');
  assert.match(reply.data.runtime, /^node v\d+/);
});

test('greets the world without a name', () => {
  assert.equal(nameOf({}), 'world');
  assert.equal(nameOf('{"name": " Grace "}'), 'Grace');
  assert.equal(nameOf(Buffer.from('{"name":"Linus"}')), 'Linus');
  assert.equal(nameOf('plain text'), 'plain text');
});

test('refuses a request that is not a CloudEvent', () => {
  const answer = handle({}, { name: 'Ada' });
  assert.equal(answer.statusCode, 400);
});
