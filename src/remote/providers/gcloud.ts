/**
 * Google Compute Engine through `gcloud`: spot (or preemptible) instances named after the job,
 * each with a startup script (templates/gcloud-startup.sh) that installs what is missing, mounts
 * the shared folder and runs a worker; `--delete` lists the job's instances by label and deletes
 * them. A preempted instance can report RUNNING for a minute: the job folder's heartbeats, not
 * this state, say what is working.
 */
import { join } from 'node:path';
import { PieceworkError, UsageError } from '../../core/errors.js';
import {
  applyPlan,
  defaultScriptDir,
  displayName,
  jobTag,
  renderCloudStartup,
  type ApplyOptions,
  type ApplyResult,
  type CreateOptions,
  type DeleteOptions,
  type PlanOptions,
  type PlannedCommand,
  type ProviderPlan,
} from './common.js';

export type GcloudPlanOptions = PlanOptions;

export const defaultMachineType = 'e2-standard-2';
/** Debian 13's own nodejs is 20.19, new enough, so nothing has to be downloaded from elsewhere. */
export const defaultImage = 'debian-cloud/debian-13';
export const labelKey = 'piecework-job';
/** Compute Engine's limit on one metadata value (the startup script is one). */
export const startupScriptLimit = 256 * 1024;

export async function plan(options: GcloudPlanOptions): Promise<ProviderPlan> {
  const tag = jobTag(options.jobId);
  const project = options.project ? [`--project=${options.project}`] : [];
  if (options.action === 'delete') {
    return { provider: 'gcloud', action: 'delete', jobTag: tag, files: [], commands: deleteCommands(tag, options) };
  }

  if (!options.zone) throw new UsageError('--zone is required with --provider gcloud', 'e.g. --zone europe-west1-b');
  const scriptPath = join(options.scriptDir ?? defaultScriptDir(), 'gcloud-startup.sh');
  const script = await renderStartupScript(options);
  const bytes = Buffer.byteLength(script);
  if (bytes > startupScriptLimit) {
    throw new PieceworkError(`the startup script is ${bytes} bytes; Compute Engine accepts at most ${startupScriptLimit} in one metadata value`, {
      hint: 'a very long command or environment? put it in a script on the shared folder and run that',
    });
  }
  // Names: the job's name and id, a launch stamp (a second launch of one job adds instances, never
  // collides) and a number. GCE names are at most 63 characters: this stays under 60.
  const stamp = Date.now().toString(36).slice(-6);
  const base = displayName(options.jobId, options.job);
  const names = Array.from({ length: options.count }, (_, i) => `${base}-${stamp}-${String(i + 1).padStart(3, '0')}`);
  const g = options.gcloud ?? {};
  const labels = [[labelKey, tag] as const, ...(g.labels ?? [])].map(([k, v]) => `${k}=${v}`).join(',');
  const argv = [
    'gcloud', 'compute', 'instances', 'create', ...names,
    ...project,
    `--zone=${options.zone}`,
    `--machine-type=${options.machineType ?? defaultMachineType}`,
    ...imageFlags(options.image ?? defaultImage),
    ...(options.spotModel === 'preemptible'
      ? ['--preemptible', ...(g.maxRunDuration ? ['--instance-termination-action=DELETE'] : [])]
      : ['--provisioning-model=SPOT', '--instance-termination-action=DELETE']),
    ...(g.maxRunDuration ? [`--max-run-duration=${g.maxRunDuration}`] : []),
    ...(g.serviceAccount ? [`--service-account=${g.serviceAccount}`] : []),
    ...(g.scopes?.length ? [`--scopes=${g.scopes.join(',')}`] : []),
    ...(g.bootDiskSize ? [`--boot-disk-size=${g.bootDiskSize}`] : []),
    ...(g.bootDiskType ? [`--boot-disk-type=${g.bootDiskType}`] : []),
    ...(g.network ? [`--network=${g.network}`] : []),
    ...(g.subnet ? [`--subnet=${g.subnet}`] : []),
    ...(g.noAddress ? ['--no-address'] : []),
    // GPUs cannot live-migrate: their instances must stop for host maintenance.
    ...(g.accelerators?.length ? [...g.accelerators.map((a) => `--accelerator=${a}`), '--maintenance-policy=TERMINATE'] : []),
    '--metadata-from-file', `startup-script=${scriptPath}`,
    `--labels=${labels}`,
    ...(options.providerArgs ?? []),
    '--format=value(name)',
  ];
  return {
    provider: 'gcloud',
    action: 'create',
    jobTag: tag,
    files: [{ path: scriptPath, content: script, mode: options.mountKeyText ? 0o600 : 0o644, bytes }],
    commands: [{ argv, description: `create ${options.count} ${options.spotModel === 'preemptible' ? 'preemptible' : 'spot'} instance(s) for ${tag}` }],
  };
}

/** List the instances labelled with the job's tag (in every zone unless one is given), delete them. */
function deleteCommands(tag: string, options: DeleteOptions): PlannedCommand[] {
  const project = options.project ? [`--project=${options.project}`] : [];
  const list = ['gcloud', 'compute', 'instances', 'list', ...project, `--filter=labels.${labelKey}=${tag}`, '--format=value(selfLink)'];
  if (options.zone) list.push(`--zones=${options.zone}`);
  return [
    { argv: list, description: `list the instances labelled ${labelKey}=${tag}`, role: 'lookup' },
    // Full instance URIs carry their zone, so instances in several zones go in one command.
    { argv: ['gcloud', 'compute', 'instances', 'delete', '--quiet', ...project], description: 'delete them' },
  ];
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
