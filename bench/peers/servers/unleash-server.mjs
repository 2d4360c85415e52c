// Child process: Unleash OSS (the npm package unleash-server) on 127.0.0.1, port 0. The parent
// passes the database URL and the API tokens in the environment and kills this process by pid,
// so an outage is a real crash, not a graceful shutdown.
import { start } from 'unleash-server';

const databaseUrl = process.env.BENCH_UNLEASH_DATABASE_URL;
if (!databaseUrl) {
  console.error('BENCH_UNLEASH_DATABASE_URL is required');
  process.exit(2);
}

try {
  const instance = await start({
    db: { connectionString: databaseUrl, ssl: false },
    server: { host: '127.0.0.1', port: 0, gracefulShutdownEnable: false },
    // Unleash logs every request at info; the parent only needs the start line and errors.
    logLevel: 'error',
    // No telemetry leaves the machine: the version check and usage reporting are off.
    versionCheck: { enable: false },
    sendTelemetryData: false,
  });
  const address = instance.server.address();
  console.log(JSON.stringify({ ready: true, port: address.port }));
} catch (err) {
  console.error(`unleash failed to start: ${err && err.stack ? err.stack : String(err)}`);
  process.exit(1);
}
