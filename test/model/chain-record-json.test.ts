import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../../src/model/canonical-json.js';
import {
  GENESIS_HASH,
  chainRecord,
  parseFlipInput,
  recordJson,
  verifyRecordHash,
} from '../../src/model/flip-record.js';

/** Text a flip accepts (no control characters, trimmed), including quotes and backslashes. */
const text = fc
  .string({ minLength: 1, maxLength: 40, unit: 'binary' })
  .map((s) =>
    [...s]
      .filter((c) => c.charCodeAt(0) > 0x1f && c.charCodeAt(0) !== 0x7f)
      .join('')
      .trim(),
  )
  .filter((s) => s.length > 0);

const flipInput = fc.record(
  {
    id: fc.stringMatching(/^[A-Za-z0-9._:-]{1,20}$/),
    actor: text,
    action: fc.constantFrom('halt', 'resume'),
    selector: fc.record(
      {
        tenant: fc.stringMatching(/^[a-z0-9-]{1,12}$/),
        capability: fc.stringMatching(/^[a-z.]{1,12}$/),
      },
      { requiredKeys: [] },
    ),
    reason: text,
    release: text,
    source: fc.stringMatching(/^[a-z]{1,12}$/),
  },
  { requiredKeys: ['actor', 'action', 'selector', 'reason'] },
);

describe('KS-2.3.1 a chained record is encoded once: its canonical JSON is derived from the body hashed', () => {
  it('recordJson of a chained record equals the canonical JSON of the record, for any flip', () => {
    let checked = 0;
    fc.assert(
      fc.property(
        flipInput,
        fc.integer({ min: 0, max: 1e9 }),
        fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }),
        (input, seq, at) => {
          let flip;
          try {
            flip = parseFlipInput(input);
          } catch {
            return; // a selector or text the model refuses: not a flip
          }
          const r = chainRecord(flip, { seq, hash: GENESIS_HASH }, at);
          expect(recordJson(r)).toBe(canonicalJson(r));
          expect(JSON.parse(recordJson(r))).toEqual({ ...r });
          expect(verifyRecordHash(r)).toBe(true);
          checked++;
        },
      ),
      { numRuns: 300 },
    );
    expect(checked).toBeGreaterThan(200);
  });
});
