export {
  consoleRoutes,
  mountConsole,
  CONSOLE_CSP,
  type ConsoleRoutesOptions,
} from './console-routes.js';
