import { z } from 'zod';
import { releaseNameSchema } from './acks.js';

/** A release's verdict. KS-10.5.1 */
export const ReleaseStatus = { GREEN: 'green', RED: 'red' } as const;
/** One of {@link ReleaseStatus}'s values. */
export type ReleaseStatus = (typeof ReleaseStatus)[keyof typeof ReleaseStatus];

/** One verdict on a release, as stored: the latest one per release counts. */
export interface ReleaseRecord {
  /** 1, 2, ... in append order. */
  readonly seq: number;
  readonly release: string;
  /** The verdict, or `override`: an admin's resume past the gate (KS-17.2.3), which changes no verdict. */
  readonly status: ReleaseStatus | 'override';
  readonly reason?: string;
  /** On an override: the id of the resume it let through. */
  readonly flip?: string;
  /** The token name that recorded it. */
  readonly actor: string;
  /** ISO 8601 UTC. */
  readonly at: string;
  /**
   * The hash of the verdict before (64 zeros for the first): verdicts are chained like flips
   * (KS-17.7.6). Absent on verdicts written before the chain.
   */
  readonly prev?: string;
  /** SHA-256 of the verdict's canonical JSON without `hash` and `sig`. KS-17.7.6 */
  readonly hash?: string;
  /** `"<kid>:<base64url>"` over `killswitch-release-v1\n<seq>\n<hash>`, when the control plane holds a key. */
  readonly sig?: string;
}

/** Body of `POST /v1/releases`. KS-10.5.1 */
export const releaseRequestSchema = z.strictObject({
  release: releaseNameSchema,
  status: z.enum([ReleaseStatus.GREEN, ReleaseStatus.RED]),
  reason: z.string().trim().min(1, 'must not be empty').max(1024).optional(),
});
/** A parsed {@link releaseRequestSchema}. */
export type ReleaseRequest = z.infer<typeof releaseRequestSchema>;

/** Answer of `GET /v1/releases`. KS-10.5.1 */
export interface ReleasesAnswer {
  /** The latest verdict of each release, by name. */
  readonly releases: readonly ReleaseRecord[];
  /** Connected workers (open stream or live lease) and the release each reports. */
  readonly workers: readonly { readonly id: string; readonly release: string | null }[];
}
