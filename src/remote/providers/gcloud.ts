/**
 * Google Compute Engine through `gcloud`: spot (or preemptible) instances named after the job,
 * each with a startup script (templates/gcloud-startup.sh) that installs what is missing, mounts
 * the shared folder and runs a worker; `--delete` lists the job's instances by label and deletes
 * them. A preempted instance can report RUNNING for a minute: the job folder's heartbeats, not
 * this state, say what is working.
 */
import { join } from 'node:path';
import { UsageError } from '../../core/errors.js';
import {
  applyPlan,
  defaultScriptDir,
  renderCloudStartup,
  jobTag,
  type ApplyOptions,
  type ApplyResult,
  type CreateOptions,
  type PlanOptions,
  type ProviderPlan,
} from './common.js';

export type GcloudPlanOptions = PlanOptions;

export const defaultMachineType = 'e2-standard-2';
/** Debian 13's own nodejs is 20.19, new enough, so nothing has to be downloaded from elsewhere. */
export const defaultImage = 'debian-cloud/debian-13';
export const labelKey = 'piecework-job';

export async function plan(options: GcloudPlanOptions): Promise<ProviderPlan> {
  const tag = jobTag(options.job);
  if (options.action === 'delete') {
    const list = ['gcloud', 'compute', 'instances', 'list', `--filter=labels.${labelKey}=${tag}`, '--format=value(selfLink)'];
    if (options.zone) list.push(`--zones=${options.zone}`);
    return {
      provider: 'gcloud',
      action: 'delete',
      jobTag: tag,
      files: [],
      commands: [
        { argv: list, description: `list the instances labelled ${labelKey}=${tag}`, role: 'lookup' },
        // Full instance URIs carry their zone, so instances in several zones go in one command.
        { argv: ['gcloud', 'compute', 'instances', 'delete', '--quiet'], description: 'delete them' },
      ],
    };
  }

  if (!options.zone) throw new UsageError('--zone is required with --provider gcloud', 'e.g. --zone europe-west1-b');
  const scriptPath = join(options.scriptDir ?? defaultScriptDir(), 'gcloud-startup.sh');
  const script = await renderStartupScript(options);
  // Names: the job tag, a launch stamp (a second launch of one job adds instances, never
  // collides) and a number. GCE names are at most 63 characters: this stays under 60.
  const stamp = Date.now().toString(36).slice(-6);
  const names = Array.from({ length: options.count }, (_, i) => `${tag}-${stamp}-${String(i + 1).padStart(3, '0')}`);
  const argv = [
    'gcloud', 'compute', 'instances', 'create', ...names,
    `--zone=${options.zone}`,
    `--machine-type=${options.machineType ?? defaultMachineType}`,
    ...imageFlags(options.image ?? defaultImage),
    ...(options.spotModel === 'preemptible'
      ? ['--preemptible']
      : ['--provisioning-model=SPOT', '--instance-termination-action=DELETE']),
    '--metadata-from-file', `startup-script=${scriptPath}`,
    `--labels=${labelKey}=${tag}`,
    '--format=value(name)',
  ];
  return {
    provider: 'gcloud',
    action: 'create',
    jobTag: tag,
    files: [{ path: scriptPath, content: script, mode: options.mountKeyText ? 0o600 : 0o644 }],
    commands: [{ argv, description: `create ${options.count} ${options.spotModel === 'preemptible' ? 'preemptible' : 'spot'} instance(s) for ${tag}` }],
  };
}

/** `project/family` (e.g. debian-cloud/debian-13) → image family flags; anything else is an image name. */
export function imageFlags(image: string): string[] {
  const match = /^([a-z][-a-z0-9]*)\/([a-z][-a-z0-9]*)$/.exec(image);
  if (match) return [`--image-project=${match[1]}`, `--image-family=${match[2]}`];
  return [`--image=${image}`];
}

function renderStartupScript(options: CreateOptions): Promise<string> {
  return renderCloudStartup('gcloud-startup.sh', options);
}

export function apply(planned: ProviderPlan, options?: ApplyOptions): Promise<ApplyResult> {
  return applyPlan(planned, options);
}
