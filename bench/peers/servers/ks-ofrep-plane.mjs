// Child process: this project's control plane with its OFREP routes (src/ofrep), for the OFREP row
// when `killswitch serve` does not mount them yet. Same parts as `serve`: a file flip log in a
// data directory, token auth, 127.0.0.1 on port 0. Prints { url } and is killed by pid.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const [distDir, dataDir] = process.argv.slice(2);
const token = process.env.KILLSWITCH_ADMIN_TOKEN;
if (!distDir || !dataDir || !token) {
  console.error('usage: ks-ofrep-plane.mjs <dist dir> <data dir> (KILLSWITCH_ADMIN_TOKEN set)');
  process.exit(2);
}
const load = (...parts) => import(pathToFileURL(join(distDir, ...parts)).href);

try {
  const { startControlPlane } = await load('src', 'server', 'index.js');
  const { TokenAuthenticator } = await load('src', 'auth', 'index.js');
  const { ofrepRoutes, OFREP_PATHS } = await load('src', 'ofrep', 'index.js');
  const { FileFlipLogStore } = await load('providers', 'file', 'index.js');
  const store = new FileFlipLogStore({ path: join(dataDir, 'flips.jsonl') });
  const cp = await startControlPlane({
    store,
    host: '127.0.0.1',
    port: 0,
    // A benchmark floods flips: lift the per-token rate limit (KS-17.8.3), measured apart.
    maxFlipsPerSecond: 1_000_000,
    auth: new TokenAuthenticator({ tokens: [{ name: 'admin', token, role: 'admin' }] }),
    logger: { info() {}, warn: (m) => console.error(m), error: (m) => console.error(m) },
  });
  if (!cp.router.routes().some((r) => r.path === OFREP_PATHS.single)) {
    // A file store in one process is always caught up, so the plane vouches for its state.
    cp.router.add(
      ...ofrepRoutes({ view: { snapshot: () => cp.snapshot(), vouch: () => ({ ok: true }) } }),
    );
  }
  console.log(JSON.stringify({ url: cp.url, mounted: 'by bench/peers' }));
} catch (err) {
  console.error(
    `could not start the control plane with OFREP: ${err && err.stack ? err.stack : String(err)}`,
  );
  process.exit(1);
}
