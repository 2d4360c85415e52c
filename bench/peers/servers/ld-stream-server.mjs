// Child process: a minimal local stand-in for LaunchDarkly's streaming service, written for this
// benchmark from the protocol the Node server SDK speaks (FDv1 server-side streaming):
//   GET /all                  -> text/event-stream; a `put` event with every flag on connect,
//                                then a `patch` event per change ({ path: '/flags/<key>', data }).
//   GET /sdk/latest-all       -> the same data as JSON (the SDK's polling fallback).
//   POST /bench/flag          -> { "halted": boolean }: the benchmark's "flip"; answers once the
//                                patch is written to every open stream.
// It binds 127.0.0.1 on port 0, prints { ready, port } and is killed by pid for the outage.
import { createServer } from 'node:http';

const FLAG_KEY = process.env.BENCH_LD_FLAG_KEY || 'agent-halted';
let version = 1;
let halted = false;
const streams = new Set();

/** A boolean flag: variations [false, true], on, everyone gets the fallthrough variation. */
function flag() {
  return {
    key: FLAG_KEY,
    version,
    on: true,
    variations: [false, true],
    fallthrough: { variation: halted ? 1 : 0 },
    offVariation: 1,
    targets: [],
    contextTargets: [],
    rules: [],
    prerequisites: [],
    salt: 'bench',
    trackEvents: false,
    trackEventsFallthrough: false,
    clientSide: false,
    deleted: false,
  };
}

function allData() {
  return { flags: { [FLAG_KEY]: flag() }, segments: {} };
}

function send(res, event, data) {
  res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1');
  if (req.method === 'GET' && url.pathname === '/all') {
    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
    });
    send(res, 'put', { path: '/', data: allData() });
    streams.add(res);
    req.on('close', () => streams.delete(res));
    return;
  }
  if (req.method === 'GET' && url.pathname === '/sdk/latest-all') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(allData()));
    return;
  }
  if (req.method === 'POST' && url.pathname === '/bench/flag') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 4096) req.destroy();
    });
    req.on('end', () => {
      let parsed;
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = undefined;
      }
      if (typeof parsed?.halted !== 'boolean') {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end('{"error":"halted must be a boolean"}');
        return;
      }
      halted = parsed.halted;
      version += 1;
      const patch = { path: `/flags/${FLAG_KEY}`, data: flag() };
      for (const stream of streams) send(stream, 'patch', patch);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ halted, version, streams: streams.size }));
    });
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"not found"}');
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(JSON.stringify({ ready: true, port: address.port }));
});
