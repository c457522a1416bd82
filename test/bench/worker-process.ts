// The measurements that need a process of their own (a cold start, an RSS figure of its own)
// run in a forked node process: same mount namespace and environment as the bench, arguments
// as JSON on the command line, one report back over IPC, then exit.
import { fork } from 'node:child_process';

/** Forks `file` as a worker with `args` and resolves with the report it sends. */
export function runWorker<Args, Report>(file: string, args: Args, execArgv: string[] = []): Promise<Report> {
  return new Promise((resolve, reject) => {
    const child = fork(file, ['--worker', JSON.stringify(args)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let report: Report | undefined;
    child.on('message', (m) => (report = m as Report));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (report !== undefined) resolve(report);
      else reject(new Error(`the worker ${file} ended (${signal ? `signal ${signal}` : `exit code ${code}`}) without a report`));
    });
  });
}

/** In the worker: when this module is the one started with --worker, runs `body` and sends its report. */
export function workerMain<Args, Report>(mod: NodeModule, name: string, body: (args: Args) => Promise<Report>): void {
  if (require.main !== mod || process.argv[2] !== '--worker') return;
  body(JSON.parse(process.argv[3]!) as Args).then(
    (report) => process.send!(report, () => process.exit(0)),
    (err: unknown) => {
      process.stderr.write(`bench ${name} worker: ${(err as Error).stack ?? String(err)}\n`);
      process.exit(1);
    },
  );
}
