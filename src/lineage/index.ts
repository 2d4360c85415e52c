/**
 * The portable lineage of a run (spec KS-1.6): tenant, feature and the run path from the root run
 * to this one, as it crosses processes with the work: MCP `_meta`, HTTP headers, W3C `baggage`,
 * queue job data. Parsing validates and refuses malformed input with `KS_INVALID_INPUT`.
 */
export {
  MAX_RUN_DEPTH,
  MAX_LINEAGE_ID_LENGTH,
  MAX_LINEAGE_TEXT_LENGTH,
  LineageWire,
  lineageSchema,
  parseLineage,
  safeParseLineage,
  formatRunPath,
  parseRunPath,
  lineageContext,
  lineageOfContext,
  lineageToHeaders,
  lineageFromHeaders,
  lineageToBaggage,
  lineageFromBaggage,
  lineageToMeta,
  lineageFromMeta,
  withLineage,
  lineageFromJobData,
  sameLineage,
  describeLineage,
  isLineageId,
  type Lineage,
  type LineageContext,
  type HeaderSource,
} from './lineage.js';
