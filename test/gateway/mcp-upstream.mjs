// The adapters' real MCP test server (slow tools that honour cancellation) as a stdio upstream of
// the gateway, writing what it sees (calls, cancellations, the _meta they carried) as JSON lines
// to the file named by its first argument.
import { appendFileSync } from 'node:fs';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { createTestServer } from '../adapters/mcp/mcp-test-server.mjs';

const file = process.argv[2];
const server = createTestServer((event) => appendFileSync(file, `${JSON.stringify(event)}\n`));
await server.connect(new StdioServerTransport());
