'use strict';
// Integration test: the function served by faas-js-runtime, as in its image, over real HTTP.
const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const { start } = require('faas-js-runtime');
const func = require('../index.js');

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

test('a binary-mode CloudEvent gets a binary-mode reply event', async (t) => {
  const port = await freePort();
  const server = await start(func, { port, logLevel: 'silent' });
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const base = `http://127.0.0.1:${port}`;

  const ready = await fetch(`${base}/health/readiness`);
  assert.equal(ready.status, 200);

  const response = await fetch(`${base}/`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'ce-specversion': '1.0',
      'ce-id': 'it-1',
      'ce-source': '/test',
      'ce-type': 'com.example.hello.request',
    },
    body: JSON.stringify({ name: 'Ada' }),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('ce-type'), 'com.example.hello.reply');
  assert.equal(response.headers.get('ce-subject'), 'it-1');
  assert.equal(response.headers.get('ce-source'), '/functions/hello-node');
  const body = await response.json();
  assert.equal(body.message, 'Hello, Ada!');

  const plain = await fetch(`${base}/`, { method: 'POST', body: 'hi' });
  assert.equal(plain.status, 400);
});
