/**
 * True for loopback hosts (`127.0.0.0/8`, `::1`, `::ffff:127.x.y.z`, `localhost`): the only
 * addresses a control plane may serve without configured tokens (KS-5.2.8), and the only ones the
 * CLI sends the generated admin token to (KS-5.3.4).
 */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^(?:::ffff:)?127(?:\.\d{1,3}){3}$/.test(h);
}
