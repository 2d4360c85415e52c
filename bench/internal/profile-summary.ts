/**
 * Summarises V8 `.cpuprofile` files (from `node --cpu-prof`): self time and total (inclusive)
 * time per function, the top entries, with the share of all sampled (non-idle) time. Used to
 * find where a flip's CPU goes (docs/benchmarks.md).
 *
 * Usage: node dist/bench/internal/profile-summary.js <file.cpuprofile>... [--top 30] [--match re]
 *   --match: only functions whose "name file:line" matches the regular expression.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const opt = (name: string): string | undefined => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const TOP = Number(opt('top') ?? '30');
const MATCH = opt('match') !== undefined ? new RegExp(opt('match')!) : undefined;
const files = args.filter((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));

const IDLE = new Set(['(idle)', '(program)', '(garbage collector)']);

for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Sample time per node: each sample's delta is the time up to the next sample.
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const dt = p.timeDeltas[i + 1] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + dt);
  }
  const label = (n: Node): string => {
    const f = n.callFrame;
    const where = f.url
      ? `${f.url.replace(/^.*\/(dist|node_modules)\//, '$1/')}:${f.lineNumber + 1}`
      : '';
    return `${f.functionName || '(anonymous)'} ${where}`.trim();
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let busy = 0;
  let gc = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const name = n.callFrame.functionName;
    if (name === '(garbage collector)') gc += us;
    if (IDLE.has(name) && name !== '(garbage collector)') continue;
    busy += us;
    const l = label(n);
    self.set(l, (self.get(l) ?? 0) + us);
    // Inclusive: once per distinct label on the stack.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const cl = label(byId.get(cur)!);
      if (seen.has(cl)) continue;
      seen.add(cl);
      total.set(cl, (total.get(cl) ?? 0) + us);
    }
  }
  const show = (m: Map<string, number>, title: string) => {
    const rows = [...m].filter(([l]) => MATCH === undefined || MATCH.test(l));
    rows.sort((a, b) => b[1] - a[1]);
    console.log(`  ${title}`);
    for (const [l, us] of rows.slice(0, TOP)) {
      console.log(
        `    ${(us / 1000).toFixed(1).padStart(8)} ms ${((100 * us) / busy).toFixed(1).padStart(5)}%  ${l}`,
      );
    }
  };
  console.log(
    `${basename(file)}: busy ${(busy / 1000).toFixed(1)} ms (GC ${(gc / 1000).toFixed(1)} ms)`,
  );
  show(self, 'self');
  show(total, 'total');
}
