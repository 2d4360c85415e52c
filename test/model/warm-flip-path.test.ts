import { describe, expect, it } from 'vitest';
import { exerciseFlipPath } from '../../src/model/warm-flip-path.js';

describe('KS-6.3.12 the halt path kept warm on a private state', () => {
  it('applies a halt at every level and the resumes lifting them, each hash-checked', () => {
    expect(exerciseFlipPath()).toBe(10);
    // Repeatable: nothing is shared between runs.
    expect(exerciseFlipPath()).toBe(10);
  });
});
