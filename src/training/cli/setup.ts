/** npm run setup:train — creates .venv with the pinned Paddle toolchain (a no-op when current). */
import { setupPythonEnv } from '../python-env.js';
import { runCli } from './args.js';

runCli(() => setupPythonEnv());
