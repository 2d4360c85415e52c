/**
 * `openfeature-kill-switch/mcp`: the MCP client adapter (`@modelcontextprotocol/sdk` 1.x). The SDK is
 * an optional peer dependency; only a worker that imports this subpath loads it.
 */
export {
  McpRun,
  guardMcpClient,
  type GuardedCallToolOptions,
  type McpRunOptions,
} from './mcp-run.js';
