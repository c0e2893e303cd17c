/**
 * Amazon EC2 through `aws`: one-time spot instances tagged with the job, each with user data
 * (templates/aws-user-data.sh, gzip-compressed: EC2 takes at most 16 KB and cloud-init inflates
 * it) that installs what is missing, mounts the shared folder and runs a worker, then powers off —
 * which terminates the instance (`--instance-initiated-shutdown-behavior terminate`). `--count N`
 * takes what spot capacity there is (`1:N`), not all or nothing. The instance metadata service
 * answers only with a session token (IMDSv2): the user data holds the sshfs key. `--delete` finds
 * the job's instances by tag and terminates them.
 */
import { join } from 'node:path';
import { PieceworkError, UsageError } from '../../core/errors.js';
import {
  applyPlan,
  defaultScriptDir,
  displayName,
  fileBytes,
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
/** EC2's limit on user data: 16 KB, raw (before base64). */
export const userDataLimit = 16 * 1024;
/** Launch refuses user data above this, leaving room under EC2's limit for a longer key or command. */
export const userDataBudget = 12 * 1024;

export async function plan(options: AwsPlanOptions): Promise<ProviderPlan> {
  const tag = jobTag(options.jobId);
  const global = options.action === 'delete' ? profileArgs(options.profile) : profileArgs(options.aws?.profile);
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
            'aws', ...global, 'ec2', 'describe-instances', ...region,
            '--filters', `Name=tag:${tagKey},Values=${tag}`, 'Name=instance-state-name,Values=pending,running,stopping,stopped',
            '--query', 'Reservations[].Instances[].InstanceId',
            '--output', 'text',
          ],
          description: `find the instances tagged ${tagKey}=${tag}`,
          role: 'lookup',
        },
        { argv: ['aws', ...global, 'ec2', 'terminate-instances', ...region, '--output', 'text', '--instance-ids'], description: 'terminate them' },
      ],
    };
  }

  if (!options.image) {
    throw new UsageError('--image (an AMI id) is required with --provider aws', 'AMI ids differ by region; a Debian 13 AMI has a new enough nodejs');
  }
  const a = options.aws ?? {};
  const scriptPath = join(options.scriptDir ?? defaultScriptDir(), 'aws-user-data.sh.gz');
  const script = await renderCloudStartup('aws-user-data.sh', options);
  const bytes = fileBytes({ content: script, encoding: 'gzip' }).length;
  if (bytes > userDataBudget) {
    throw new PieceworkError(`the user data is ${bytes} bytes gzip-compressed; EC2 accepts at most ${userDataLimit} and launch keeps under ${userDataBudget}`, {
      hint: 'a very long command or environment? put it in a script on the shared folder and run that',
    });
  }
  const spotOptions = ['SpotInstanceType=one-time', 'InstanceInterruptionBehavior=terminate', ...(a.maxPrice ? [`MaxPrice=${a.maxPrice}`] : [])];
  const tags = [[tagKey, tag] as const, ['Name', displayName(options.jobId, options.job)] as const, ...(a.tags ?? [])].map(([k, v]) => `{Key=${k},Value=${v}}`).join(',');
  const argv = [
    'aws', ...global, 'ec2', 'run-instances', ...region,
    '--image-id', options.image,
    '--instance-type', options.machineType ?? defaultInstanceType,
    // min:max — as many as spot capacity allows, at least one, instead of all or nothing.
    '--count', `1:${options.count}`,
    '--instance-market-options', `MarketType=spot,SpotOptions={${spotOptions.join(',')}}`,
    // The worker powers the instance off when it has no more work: that ends the billing.
    '--instance-initiated-shutdown-behavior', 'terminate',
    // IMDSv2 only: a token (a PUT, which SSRF through a proxy rarely manages) guards the user data.
    '--metadata-options', 'HttpTokens=required,HttpEndpoint=enabled',
    ...(a.subnetId ? ['--subnet-id', a.subnetId] : []),
    ...(a.securityGroupIds?.length ? ['--security-group-ids', ...a.securityGroupIds] : []),
    ...(a.instanceProfile ? ['--iam-instance-profile', a.instanceProfile.startsWith('arn:') ? `Arn=${a.instanceProfile}` : `Name=${a.instanceProfile}`] : []),
    ...(a.keyName ? ['--key-name', a.keyName] : []),
    '--user-data', `fileb://${scriptPath}`,
    '--tag-specifications', `ResourceType=instance,Tags=[${tags}]`,
    ...(options.providerArgs ?? []),
    '--query', 'Instances[].InstanceId',
    '--output', 'text',
  ];
  return {
    provider: 'aws',
    action: 'create',
    jobTag: tag,
    files: [{ path: scriptPath, content: script, mode: options.mountKeyText ? 0o600 : 0o644, encoding: 'gzip', bytes }],
    commands: [{ argv, description: `start up to ${options.count} spot instance(s) for ${tag} (as many as there is capacity for)` }],
  };
}

function profileArgs(profile: string | undefined): string[] {
  return profile ? ['--profile', profile] : [];
}

export function apply(planned: ProviderPlan, options?: ApplyOptions): Promise<ApplyResult> {
  return applyPlan(planned, options);
}
