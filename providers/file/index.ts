export {
  FileFlipLogStore,
  FileStoreState,
  type FileFlipLogStoreOptions,
  type LogFileHandle,
} from './file-flip-log-store.js';
export { readFlipLogFile, parseFlipLog, type FlipLogFileContents } from './read-flip-log-file.js';
export { logIdPath } from './log-id-file.js';
export { headPath, readHeadFile } from './head-file.js';
