import type { CommandModule } from 'yargs';
import { requestStop } from '../../core/stop.js';
import { getContext } from '../context.js';
import { plural } from '../report/format.js';

interface StopArgs {
  job?: string;
  clear?: boolean;
}

const command: CommandModule<object, StopArgs> = {
  command: 'stop <job>',
  describe: 'Ask every worker of a job to finish its current chunks and exit (a STOP file)',
  builder: (y) =>
    y
      .positional('job', { type: 'string', describe: 'The job folder', demandOption: true })
      .option('clear', { type: 'boolean', describe: 'Remove the STOP file so that workers may run again' })
      .example('$0 stop jobs/score', 'drain: workers exit after their current chunks')
      .example('$0 stop --clear jobs/score', 'allow work again'),
  handler: async (argv) => {
    const context = getContext();
    const result = await requestStop(argv.job!, { clear: argv.clear });
    if (result.cleared) context.stderr.write(`stop: STOP file removed; workers may run on ${result.job}\n`);
    else context.stderr.write(`stop: STOP file written; ${plural(result.liveWorkers.length, 'live worker')} will exit after their current chunks\n`);
  },
};

export default command;
