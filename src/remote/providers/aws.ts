/**
 * Amazon EC2 through `aws`: one-time spot instances tagged with the job, each with user data
 * (templates/aws-user-data.sh) that installs what is missing, mounts the shared folder and runs
 * a worker, then powers off — which terminates the instance (`--instance-initiated-shutdown-
 * behavior terminate`). `--delete` finds the job's instances by tag and terminates them.
 */
import { join } from 'node:path';
import { UsageError } from '../../core/errors.js';
import {
  applyPlan,
  defaultScriptDir,
  jobTag,
  renderCloudStartup,
  type ApplyOptions,
  type ApplyResult,
  type PlanOptions,
  type ProviderPlan,
} from './common.js';

export type AwsPlanOptions = PlanOptions;

export const defaultInstanceType = 't3.medium';
export const tagKey = 'piecework-job';

export async function plan(options: AwsPlanOptions): Promise<ProviderPlan> {
  const tag = jobTag(options.job);
  const region = options.region ? ['--region', options.region] : [];
  if (options.action === 'delete') {
    return {
      provider: 'aws',
      action: 'delete',
      jobTag: tag,
      files: [],
      commands: [
        {
          argv: [
            'aws', 'ec2', 'describe-instances', ...region,
            '--filters', `Name=tag:${tagKey},Values=${tag}`, 'Name=instance-state-name,Values=pending,running,stopping,stopped',
            '--query', 'Reservations[].Instances[].InstanceId',
            '--output', 'text',
          ],
          description: `find the instances tagged ${tagKey}=${tag}`,
          role: 'lookup',
        },
        { argv: ['aws', 'ec2', 'terminate-instances', ...region, '--output', 'text', '--instance-ids'], description: 'terminate them' },
      ],
    };
  }

  if (!options.image) {
    throw new UsageError('--image (an AMI id) is required with --provider aws', 'AMI ids differ by region; a Debian 13 AMI has a new enough nodejs');
  }
  const scriptPath = join(options.scriptDir ?? defaultScriptDir(), 'aws-user-data.sh');
  const script = await renderCloudStartup('aws-user-data.sh', options);
  const argv = [
    'aws', 'ec2', 'run-instances', ...region,
    '--image-id', options.image,
    '--instance-type', options.machineType ?? defaultInstanceType,
    '--count', String(options.count),
    '--instance-market-options', 'MarketType=spot,SpotOptions={SpotInstanceType=one-time,InstanceInterruptionBehavior=terminate}',
    // The worker powers the instance off when it has no more work: that ends the billing.
    '--instance-initiated-shutdown-behavior', 'terminate',
    '--user-data', `file://${scriptPath}`,
    '--tag-specifications', `ResourceType=instance,Tags=[{Key=${tagKey},Value=${tag}},{Key=Name,Value=${tag}}]`,
    '--query', 'Instances[].InstanceId',
    '--output', 'text',
  ];
  return {
    provider: 'aws',
    action: 'create',
    jobTag: tag,
    files: [{ path: scriptPath, content: script, mode: options.mountKeyText ? 0o600 : 0o644 }],
    commands: [{ argv, description: `start ${options.count} spot instance(s) for ${tag}` }],
  };
}

export function apply(planned: ProviderPlan, options?: ApplyOptions): Promise<ApplyResult> {
  return applyPlan(planned, options);
}
