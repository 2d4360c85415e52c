import { EventEmitter } from 'node:events';
import { createServer, request, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { Router, encodeEvent, type Route } from '../../src/server/index.js';
import { StreamHub } from '../../src/server/stream-hub.js';

const route = (method: Route['method'], path: string): Route => ({
  method,
  path,
  auth: 'public',
  handle: () => {},
});

describe('KS-5.1.10 the route table matches exact paths, params and prefixes', () => {
  const r = new Router().add(
    route('GET', '/v1/flips'),
    route('POST', '/v1/flips'),
    route('POST', '/ofrep/v1/evaluate/flags/:key'),
    route('GET', '/console/*'),
    route('GET', '/'),
  );
  it('finds routes and decodes params', () => {
    expect(r.match('GET', '/v1/flips')).toMatchObject({ kind: 'found', params: {} });
    expect(r.match('POST', '/ofrep/v1/evaluate/flags/kill-switch.tenant')).toMatchObject({
      kind: 'found',
      params: { key: 'kill-switch.tenant' },
    });
    expect(r.match('GET', '/console/assets/app.js')).toMatchObject({ kind: 'found' });
    expect(r.match('GET', '/console')).toMatchObject({ kind: 'found' });
    expect(r.match('GET', '/')).toMatchObject({ kind: 'found' });
    expect(r.match('HEAD', '/v1/flips')).toMatchObject({ kind: 'found' });
  });
  it('answers not-found and method-not-allowed with the allowed methods', () => {
    expect(r.match('GET', '/v1/flipsx')).toEqual({ kind: 'not-found' });
    expect(r.match('GET', '/v1/flips/1')).toEqual({ kind: 'not-found' });
    expect(r.match('GET', '/ofrep/v1/evaluate/flags/')).toEqual({ kind: 'not-found' });
    expect(r.match('DELETE', '/v1/flips')).toEqual({
      kind: 'method-not-allowed',
      allow: ['GET', 'POST'],
    });
  });
  it('refuses a route mounted twice', () => {
    expect(() => r.add(route('GET', '/v1/flips'))).toThrow(/already mounted/);
  });

  it('lets the first route added win: an exact path mounted after a param or prefix route that takes it', () => {
    const first = route('GET', '/v1/:name');
    const later = route('GET', '/v1/flips');
    const other = route('POST', '/v1/flips');
    const t = new Router().add(first, later, other, route('GET', '/a/*'), route('GET', '/a/b'));
    expect(t.match('GET', '/v1/flips')).toMatchObject({ route: first, params: { name: 'flips' } });
    expect(t.match('POST', '/v1/flips')).toMatchObject({ route: other, params: {} });
    expect(t.match('GET', '/a/b')).toMatchObject({ kind: 'found', route: { path: '/a/*' } });
    // Mounted later, a prefix route takes nothing from an exact route mounted before it.
    const u = new Router().add(later).add(route('GET', '/v1/*'));
    expect(u.match('GET', '/v1/flips')).toMatchObject({ route: later });
  });

  it('matches as a walk of the table in order would, on random tables and paths', () => {
    const seg = fc.constantFrom('v1', 'flips', 'a', ':p', ':q', '');
    const routeArb = fc.record({
      method: fc.constantFrom<Route['method']>('GET', 'POST'),
      segs: fc.array(seg, { minLength: 0, maxLength: 3 }),
      prefix: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(routeArb, { maxLength: 8 }),
        fc.array(fc.constantFrom('v1', 'flips', 'a', 'x', ''), { maxLength: 4 }),
        fc.constantFrom('GET', 'POST', 'HEAD', 'PUT'),
        (specs, pathSegs, method) => {
          const table = new Router();
          const mounted: Route[] = [];
          for (const sp of specs) {
            const path = `/${sp.segs.join('/')}${sp.prefix ? (sp.segs.length > 0 ? '/*' : '*') : ''}`;
            const rt = route(sp.method, path);
            try {
              table.add(rt);
              mounted.push(rt);
            } catch {
              // mounted twice: refused, as the table says
            }
          }
          const path = `/${pathSegs.join('/')}`;
          // The reference: the first route in mounting order whose path and method match.
          const parts = path.split('/').slice(1);
          let want: { route: Route; params: Record<string, string> } | undefined;
          for (const rt of mounted) {
            const prefix = rt.path.endsWith('/*');
            const segs = (prefix ? rt.path.slice(0, -2) : rt.path).split('/').slice(1);
            if (prefix ? parts.length < segs.length : parts.length !== segs.length) continue;
            const params: Record<string, string> = {};
            if (
              !segs.every((sg, i) =>
                sg.startsWith(':')
                  ? parts[i] !== '' && ((params[sg.slice(1)] = parts[i]!), true)
                  : sg === parts[i],
              )
            )
              continue;
            if (rt.method === method || (method === 'HEAD' && rt.method === 'GET')) {
              want = { route: rt, params };
              break;
            }
          }
          const got = table.match(method, path);
          if (want === undefined) expect(got.kind).not.toBe('found');
          else expect(got).toEqual({ kind: 'found', route: want.route, params: want.params });
        },
      ),
      { numRuns: 2000 },
    );
  });
});

class FakeRes extends EventEmitter {
  writes: Buffer[] = [];
  destroyed = false;
  writableLength = 0;
  write(b: Buffer): boolean {
    this.writes.push(b);
    return true;
  }
  end(): void {}
  destroy(): void {
    this.destroyed = true;
    this.emit('close');
  }
}

describe('KS-5.1.12 the fan-out encodes each event once and writes the same buffer to every subscriber', () => {
  it('writes one Buffer instance to all, and drops only the subscriber past the bound', () => {
    const drops: unknown[] = [];
    const hub = new StreamHub({ maxBufferedBytes: 100, onDrop: (d) => drops.push(d) });
    const subs = [new FakeRes(), new FakeRes(), new FakeRes()];
    subs.forEach((s, i) => hub.add(s as unknown as ServerResponse, `w${i}`, () => {}));
    const ev = encodeEvent('flip', { seq: 1 }, 1);
    hub.broadcast(ev);
    for (const s of subs) expect(s.writes[0]).toBe(ev);
    subs[1]!.writableLength = 101;
    hub.broadcast(encodeEvent('heartbeat', { head: 1, at: 0 }));
    expect(subs[1]!.destroyed).toBe(true);
    expect(drops).toEqual([{ workerId: 'w1', pending: 101 }]);
    expect(hub.size).toBe(2);
    expect(hub.dropped).toBe(1);
  });

  it('lets a large first write (snapshot or replay) drain before the bound applies', () => {
    const drops: unknown[] = [];
    const hub = new StreamHub({ maxBufferedBytes: 100, onDrop: (d) => drops.push(d) });
    const slow = new FakeRes();
    // A 5,000-byte snapshot was written and none of it has been read yet.
    slow.writableLength = 5000;
    hub.add(slow as unknown as ServerResponse, 'big', () => {}, 5000);
    hub.broadcast(encodeEvent('heartbeat', { head: 1, at: 0 }));
    expect(slow.destroyed).toBe(false);
    // Once it has drained under the bound, the bound applies as for everyone.
    slow.writableLength = 50;
    hub.broadcast(encodeEvent('heartbeat', { head: 1, at: 1 }));
    slow.writableLength = 101;
    hub.broadcast(encodeEvent('heartbeat', { head: 1, at: 2 }));
    expect(slow.destroyed).toBe(true);
    expect(drops).toEqual([{ workerId: 'big', pending: 101 }]);
  });

  it('hands each subscriber its bytes during the broadcast, not on a later tick', async () => {
    // Node corks a response's socket on write and flushes it on the next tick; a broadcast run
    // inside the append's promise chain would then wait for the flip's own HTTP answer.
    const hub = new StreamHub({ maxBufferedBytes: 1 << 20 });
    let sub: ServerResponse | undefined;
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      sub = res;
      hub.add(res, 'w', () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const received: string[] = [];
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) =>
      res.on('data', (c: Buffer) => received.push(c.toString())),
    );
    req.end();
    try {
      await vi.waitFor(() => expect(hub.size).toBe(1));
      // As in the control plane: inside a promise continuation, where Node's own uncork would
      // come only after every chained continuation ran.
      const left = await Promise.resolve().then(() => {
        hub.broadcast(encodeEvent('flip', { seq: 1 }, 1));
        return { pending: sub!.writableLength, corked: sub!.socket!.writableCorked };
      });
      expect(left).toEqual({ pending: 0, corked: 0 });
      await vi.waitFor(() => expect(received.join('')).toContain('event: flip'));
    } finally {
      req.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('encodes SSE fields exactly', () => {
    expect(encodeEvent('flip', { a: 'x\ny' }, 7).toString()).toBe(
      'event: flip\nid: 7\ndata: {"a":"x\\ny"}\n\n',
    );
    expect(encodeEvent('heartbeat', { head: 1 }).toString()).toBe(
      'event: heartbeat\ndata: {"head":1}\n\n',
    );
  });

  /** A hub behind a plain server, and raw TCP clients whose bytes are kept as they arrive. */
  async function hubOverTheWire(opts: { writeFirst: boolean }) {
    const hub = new StreamHub({ maxBufferedBytes: 1 << 20 });
    const responses: ServerResponse[] = [];
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // As the stream route does: its head and first event are written before it is added.
      if (opts.writeFirst) res.write('retry: 1000\n\n');
      responses.push(res);
      hub.add(res, `w${responses.length}`, () => {});
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    const clients: { socket: Socket; raw: () => string }[] = [];
    const open = (version: '1.0' | '1.1') => {
      const chunks: Buffer[] = [];
      const socket = connect(port, '127.0.0.1', () =>
        socket.write(`GET / HTTP/${version}\r\nHost: 127.0.0.1\r\n\r\n`),
      );
      socket.on('data', (c: Buffer) => chunks.push(c));
      clients.push({ socket, raw: () => Buffer.concat(chunks).toString('latin1') });
    };
    return {
      hub,
      responses,
      clients,
      open,
      close: async () => {
        for (const c of clients) c.socket.destroy();
        await new Promise<void>((r) => server.close(() => r()));
      },
    };
  }

  /** The body of a raw chunked HTTP/1.1 answer, each chunk's size checked against its bytes. */
  function dechunk(raw: string): string[] {
    const head = raw.indexOf('\r\n\r\n');
    expect(raw.slice(0, head)).toMatch(/\r\ntransfer-encoding: chunked/i);
    const out: string[] = [];
    let at = head + 4;
    while (at < raw.length) {
      const eol = raw.indexOf('\r\n', at);
      const size = parseInt(raw.slice(at, eol), 16);
      expect(raw.slice(at, eol)).toMatch(/^[0-9a-f]+$/);
      out.push(raw.slice(eol + 2, eol + 2 + size));
      expect(raw.slice(eol + 2 + size, eol + 4 + size)).toBe('\r\n');
      at = eol + 4 + size;
    }
    return out;
  }

  it('frames the event as one chunk once and writes that one buffer to each socket, as valid chunked HTTP', async () => {
    const w = await hubOverTheWire({ writeFirst: true });
    try {
      for (let i = 0; i < 3; i++) w.open('1.1');
      await vi.waitFor(() => expect(w.hub.size).toBe(3));
      await vi.waitFor(() => {
        for (const c of w.clients) expect(c.raw()).toContain('retry: 1000');
      });
      const writes = w.responses.map((res) => vi.spyOn(res.socket!, 'write'));
      const ev = encodeEvent('flip', { seq: 1, reason: 'x'.repeat(300) }, 1);
      w.hub.broadcast(ev);
      const hb = encodeEvent('heartbeat', { head: 1, at: 0 });
      w.hub.broadcast(hb);
      // Two broadcasts: one write per socket each, the same buffer for every socket.
      for (const spy of writes) expect(spy).toHaveBeenCalledTimes(2);
      const first = writes.map((spy) => spy.mock.calls[0]![0]);
      for (const b of first) expect(b).toBe(first[0]);
      expect(Buffer.isBuffer(first[0])).toBe(true);
      await vi.waitFor(() => {
        for (const c of w.clients) {
          expect(dechunk(c.raw())).toEqual(['retry: 1000\n\n', ev.toString(), hb.toString()]);
        }
      });
    } finally {
      await w.close();
    }
  });

  it('leaves to the response a subscriber whose head is not sent yet, or that is not chunked (HTTP/1.0)', async () => {
    const w = await hubOverTheWire({ writeFirst: false });
    try {
      w.open('1.1');
      w.open('1.0');
      await vi.waitFor(() => expect(w.hub.size).toBe(2));
      const ev = encodeEvent('flip', { seq: 1 }, 1);
      w.hub.broadcast(ev);
      const hb = encodeEvent('heartbeat', { head: 1, at: 0 });
      w.hub.broadcast(hb);
      await vi.waitFor(() => {
        expect(dechunk(w.clients[0]!.raw())).toEqual([ev.toString(), hb.toString()]);
        const raw10 = w.clients[1]!.raw();
        expect(raw10.slice(0, raw10.indexOf('\r\n\r\n'))).not.toMatch(/transfer-encoding/i);
        expect(raw10.slice(raw10.indexOf('\r\n\r\n') + 4)).toBe(ev.toString() + hb.toString());
      });
    } finally {
      await w.close();
    }
  });
});
