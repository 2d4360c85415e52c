import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** Two local tool services: a CRM and an email sender. */
export interface ToolServices {
  readonly crmUrl: string;
  readonly emailUrl: string;
  /** Requests each service received (an effect that arrived is an effect that left). */
  readonly arrivals: { crm: number; email: number };
  close(): Promise<void>;
}

async function service(
  latencyMs: number,
  onArrival: (key: string) => void,
): Promise<{ url: string; server: Server }> {
  const seen = new Set<string>();
  const server = createServer((req, res) => {
    req.resume();
    const key = String(req.headers['idempotency-key'] ?? '');
    // Deduplicate by idempotency key, as a well-behaved API does.
    if (!seen.has(key)) {
      seen.add(key);
      onArrival(key);
    }
    const t = setTimeout(() => res.end(JSON.stringify({ ok: true, key })), latencyMs);
    res.once('close', () => clearTimeout(t));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Starts both services; each answers after `latencyMs`. */
export async function startToolServices(
  options: {
    readonly latencyMs?: number;
    readonly onArrival?: (tool: string, key: string) => void;
  } = {},
): Promise<ToolServices> {
  const arrivals = { crm: 0, email: 0 };
  const latency = options.latencyMs ?? 150;
  const crm = await service(latency, (k) => {
    arrivals.crm++;
    options.onArrival?.('crm', k);
  });
  const email = await service(latency, (k) => {
    arrivals.email++;
    options.onArrival?.('email', k);
  });
  const stop = (s: Server) =>
    new Promise<void>((r) => {
      s.close(() => r());
      s.closeAllConnections();
    });
  return {
    crmUrl: crm.url,
    emailUrl: email.url,
    arrivals,
    close: async () => {
      await stop(crm.server);
      await stop(email.server);
    },
  };
}
