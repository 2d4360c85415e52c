import { mkdtemp, readFile, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/errors.js';
import {
  FileSideEffectLedger,
  LedgerCorruptError,
  type SideEffectLedger,
} from '../../src/ledger/index.js';
import { describeLedgerConformance, ev } from '../../src/testing/side-effect-ledger-conformance.js';

let dir = '';
const quiet = { warn: () => undefined };

describeLedgerConformance('FileSideEffectLedger', {
  async create() {
    dir = await mkdtemp(join(tmpdir(), 'ks-ledger-'));
    const l = new FileSideEffectLedger({ path: join(dir, 'effects.jsonl'), logger: quiet });
    await l.open();
    return l;
  },
  async reopen(ledger: SideEffectLedger) {
    await ledger.close();
    const l = new FileSideEffectLedger({ path: join(dir, 'effects.jsonl'), logger: quiet });
    await l.open();
    return l;
  },
  async cleanup() {
    await rm(dir, { recursive: true, force: true });
  },
});

describe('KS-4.5 FileSideEffectLedger on disk', () => {
  let path = '';
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ks-ledger-'));
    path = join(dir, 'effects.jsonl');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('KS-4.5.1 one JSON line per event, written before append resolves', () => {
    it('writes each event as a line a new reader can parse', async () => {
      const l = new FileSideEffectLedger({ path });
      await l.append(ev('r1/a', 'intent'));
      const lines = (await readFile(path, 'utf8')).split('\n');
      expect(lines).toHaveLength(2);
      expect(JSON.parse(lines[0]!)).toMatchObject({ key: 'r1/a', status: 'intent' });
      await l.close();
    });
  });

  describe('KS-4.5.2 a torn last line is cut by the writer, with a warning; readers never cut', () => {
    it('a reader ignores the partial line; the first append cuts it and appends after it', async () => {
      const l = new FileSideEffectLedger({ path });
      await l.append(ev('r1/a', 'intent'));
      await l.append(ev('r1/a', 'landed'));
      await l.close();
      await appendFile(path, '{"key":"r1/b","status":"inte');
      const size = (await readFile(path)).length;
      const warnings: string[] = [];
      const l2 = new FileSideEffectLedger({ path, logger: { warn: (m) => warnings.push(m) } });
      await l2.open();
      expect((await l2.entries()).map((e) => [e.key, e.status])).toEqual([['r1/a', 'landed']]);
      expect((await readFile(path)).length).toBe(size);
      expect(warnings).toEqual([]);
      await l2.append(ev('r1/b', 'intent'));
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatch(/torn last line/);
      await l2.close();
      const l3 = new FileSideEffectLedger({ path, logger: quiet });
      expect((await l3.entries()).map((e) => [e.key, e.status])).toEqual([
        ['r1/a', 'landed'],
        ['r1/b', 'intent'],
      ]);
      await l3.close();
    });
  });

  describe('KS-4.5.6 one writer per file', () => {
    it('refuses a second writer while the first is open, and lets it write once the first closed', async () => {
      const a = new FileSideEffectLedger({ path, logger: quiet });
      const b = new FileSideEffectLedger({ path, logger: quiet });
      await a.append(ev('r1/a', 'intent'));
      await expect(b.append(ev('r1/b', 'intent'))).rejects.toMatchObject({
        code: 'KS_STORE_UNAVAILABLE',
      });
      await a.append(ev('r1/a', 'landed'));
      await a.close();
      await b.append(ev('r1/b', 'intent'));
      // The new writer folded the file again under the lock: it sees what the first one wrote.
      expect((await b.entries()).map((e) => [e.key, e.status])).toEqual([
        ['r1/a', 'landed'],
        ['r1/b', 'intent'],
      ]);
      await b.close();
    });
  });

  describe('KS-4.5.3 a bad line before the last refuses the open', () => {
    it('fails with KS_LEDGER_CORRUPT naming the line, for garbage and for an invalid event', async () => {
      const good = JSON.stringify(ev('r1/a', 'intent'));
      for (const bad of [
        'not json',
        JSON.stringify({ ...ev('r1/a', 'landed'), status: 'maybe' }),
      ]) {
        await writeFile(path, `${good}\n${bad}\n${good}\n`);
        const err = await new FileSideEffectLedger({ path, logger: quiet })
          .open()
          .catch((e: unknown) => e);
        expect(err).toBeInstanceOf(LedgerCorruptError);
        expect(err).toMatchObject({ code: 'KS_LEDGER_CORRUPT', line: 2 });
      }
    });

    it('refuses a complete (newline-terminated) bad last line instead of cutting it', async () => {
      await writeFile(path, `${JSON.stringify(ev('r1/a', 'intent'))}\n{"half":\n`);
      await expect(new FileSideEffectLedger({ path, logger: quiet }).open()).rejects.toMatchObject({
        code: 'KS_LEDGER_CORRUPT',
        line: 2,
      });
    });
  });

  describe('KS-4.5.4 bad options fail at construction', () => {
    it('names the option', () => {
      expect(() => new FileSideEffectLedger({ path: '' })).toThrow(InvalidOptionError);
      expect(() => new FileSideEffectLedger({ path, fsync: 'yes' as unknown as boolean })).toThrow(
        /option fsync/,
      );
    });
  });

  describe('KS-4.5.5 a ledger whose folder is missing cannot take intents', () => {
    it('rejects append with KS_STORE_UNAVAILABLE', async () => {
      const l = new FileSideEffectLedger({ path: join(dir, 'missing', 'effects.jsonl') });
      await expect(l.append(ev('r1/a', 'intent'))).rejects.toMatchObject({
        code: 'KS_STORE_UNAVAILABLE',
      });
    });
  });
});
