// A recording stand-in for the two cloud APIs that `launch --provider gcloud|aws` reaches through
// the real `gcloud` and `aws` CLIs: a node http server on 127.0.0.1 that answers just enough of
// the Compute Engine API (zone and project lookups, instances insert / get / list /
// aggregatedList / delete, operations get / wait, and the /batch endpoint gcloud sends several
// inserts through) and of the EC2 query API (RunInstances, DescribeInstances, TerminateInstances)
// for the CLIs to succeed — and records every request they send, batch parts unwrapped.
//
// It keeps the providers' limits that matter to launch: EC2 refuses user data over 16 KB (raw,
// before base64) and launches at most `spotCapacity` instances per request, failing when fewer
// than MinCount fit; GCE refuses a metadata value over 256 KB. The CLIs are pointed at it with
// `gcloudEnv()` / `awsEnv()`: a private CLOUDSDK_CONFIG (the user's gcloud config is never
// read or written), credentials switched off, dummy AWS keys, no AWS config files.
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { registerCleanup } from './cleanup.js';
import { makeTempDir } from './tmp.js';

export interface RecordedRequest {
  api: 'compute' | 'ec2';
  method: string;
  /** Path without the query. */
  path: string;
  query: URLSearchParams;
  /** Compute: the parsed JSON body; EC2: the form parameters. */
  body: unknown;
}

export interface GceInstance {
  project: string;
  zone: string;
  name: string;
  body: Record<string, unknown>;
}

export interface Ec2Instance {
  id: string;
  state: 'pending' | 'running' | 'shutting-down' | 'terminated';
  params: Record<string, string>;
  tags: Record<string, string>;
  /** The user data as the instance gets it: base64-decoded, gunzipped when it was gzip. */
  userData: string;
  /** Raw size (bytes, before base64) as EC2 counts it. */
  userDataBytes: number;
}

export interface CloudEndpoint {
  url: string;
  requests: RecordedRequest[];
  gce: Map<string, GceInstance>;
  ec2: Map<string, Ec2Instance>;
  /** EC2 spot capacity per RunInstances request (default: unlimited). */
  spotCapacity: number;
  /** Environment for `gcloud` that reaches this endpoint only. */
  gcloudEnv(project?: string): Record<string, string>;
  /** Environment for `aws` that reaches this endpoint only. */
  awsEnv(): Record<string, string>;
  clear(): void;
  close(): Promise<void>;
}

/** EC2's limit on user data, in raw bytes (before base64). */
export const ec2UserDataLimit = 16 * 1024;
/** GCE's limit on one metadata value. */
export const gceMetadataValueLimit = 256 * 1024;

export async function startCloudEndpoint(): Promise<CloudEndpoint> {
  const requests: RecordedRequest[] = [];
  const gce = new Map<string, GceInstance>();
  const ec2 = new Map<string, Ec2Instance>();
  let base = '';
  let nextId = 1;
  const state = { spotCapacity: Number.POSITIVE_INFINITY };

  // --- Compute Engine -------------------------------------------------------------------------
  const operation = (project: string, zone: string, type: string, target: string) => {
    const name = `operation-${nextId++}`;
    return {
      kind: 'compute#operation',
      id: String(nextId),
      name,
      operationType: type,
      status: 'DONE',
      progress: 100,
      targetLink: target,
      zone: `${base}/compute/v1/projects/${project}/zones/${zone}`,
      selfLink: `${base}/compute/v1/projects/${project}/zones/${zone}/operations/${name}`,
    };
  };
  const instanceView = (i: GceInstance) => ({
    kind: 'compute#instance',
    id: String(Math.abs(hashCode(i.name))),
    status: 'RUNNING',
    ...i.body,
    name: i.name,
    zone: `${base}/compute/v1/projects/${i.project}/zones/${i.zone}`,
    selfLink: `${base}/compute/v1/projects/${i.project}/zones/${i.zone}/instances/${i.name}`,
  });

  /** One Compute request → [status, JSON body]. */
  const compute = (method: string, path: string, query: URLSearchParams, body: unknown): [number, unknown] => {
    requests.push({ api: 'compute', method, path, query, body });
    const parts = path.replace(/^\/compute\/v1\//, '').split('/');
    const [p0, project = '', p2, zone = '', p4, name, p6, op] = parts;
    if (p0 !== 'projects') return [404, gceError(404, `unknown path ${path}`)];
    if (parts.length === 2 && method === 'GET') return [200, { kind: 'compute#project', name: project, defaultServiceAccount: `123-compute@developer.gserviceaccount.com` }];
    if (p2 === 'global' && zone === 'images' && p4 === 'family') {
      return [200, { kind: 'compute#image', name: `${name}-v1`, family: name, selfLink: `${base}/compute/v1/projects/${project}/global/images/${name}-v1` }];
    }
    if (p2 === 'aggregated' && zone === 'instances' && method === 'GET') {
      const items: Record<string, { instances: unknown[] }> = {};
      for (const i of gce.values()) if (i.project === project) (items[`zones/${i.zone}`] ??= { instances: [] }).instances.push(instanceView(i));
      return [200, { kind: 'compute#instanceAggregatedList', items }];
    }
    if (p2 !== 'zones') return [404, gceError(404, `unknown path ${path}`)];
    if (parts.length === 4 && method === 'GET') {
      return [200, { kind: 'compute#zone', name: zone, status: 'UP', region: `${base}/compute/v1/projects/${project}/regions/${zone.replace(/-[a-z]$/, '')}`, selfLink: `${base}/compute/v1/projects/${project}/zones/${zone}` }];
    }
    if (p4 === 'operations' && name !== undefined) return [200, { ...operation(project, zone, 'insert', ''), name }];
    if (p4 !== 'instances') return [404, gceError(404, `unknown path ${path}`)];
    if (name === undefined && method === 'POST') {
      const instance = body as Record<string, unknown> & { name: string; metadata?: { items?: { key: string; value: string }[] } };
      for (const item of instance.metadata?.items ?? []) {
        if (Buffer.byteLength(item.value) > gceMetadataValueLimit) return [400, gceError(400, `Metadata value for ${item.key} is too large`)];
      }
      const key = `${project}/${zone}/${instance.name}`;
      if (gce.has(key)) return [409, gceError(409, `The resource 'projects/${project}/zones/${zone}/instances/${instance.name}' already exists`)];
      gce.set(key, { project, zone, name: instance.name, body: instance });
      return [200, operation(project, zone, 'insert', `${base}/compute/v1/projects/${project}/zones/${zone}/instances/${instance.name}`)];
    }
    if (name === undefined && method === 'GET') {
      return [200, { kind: 'compute#instanceList', items: [...gce.values()].filter((i) => i.project === project && i.zone === zone).map(instanceView) }];
    }
    const key = `${project}/${zone}/${name}`;
    const found = gce.get(key);
    if (!found) return [404, gceError(404, `The resource 'projects/${project}/zones/${zone}/instances/${name}' was not found`)];
    if (method === 'GET' && p6 === undefined) return [200, instanceView(found)];
    if (method === 'DELETE') {
      gce.delete(key);
      return [200, operation(project, zone, 'delete', `${base}/compute/v1/projects/${project}/zones/${zone}/instances/${name}`)];
    }
    return [404, gceError(404, `unsupported ${method} ${path} ${op ?? ''}`)];
  };

  /** gcloud sends several requests as one multipart/mixed POST to /batch/compute/v1. */
  const batch = (contentType: string, body: string): { type: string; text: string } => {
    const boundary = /boundary="?([^";]+)"?/.exec(contentType)?.[1] ?? '';
    const answers: string[] = [];
    for (const part of body.split(`--${boundary}`).slice(1)) {
      if (part.startsWith('--')) break;
      const [outer = '', inner = ''] = splitOnce(part.replace(/^\r?\n/, ''), /\r?\n\r?\n/);
      const id = /Content-ID: <([^>]*)>/i.exec(outer)?.[1] ?? '';
      const [head = '', json = ''] = splitOnce(inner, /\r?\n\r?\n/);
      const [method = 'GET', target = '/'] = head.split(/\r?\n/)[0]?.split(' ') ?? [];
      const url = new URL(target, base);
      const [status, answer] = compute(method, url.pathname, url.searchParams, json.trim() ? JSON.parse(json) : undefined);
      answers.push(`--batch_pw\r\nContent-Type: application/http\r\nContent-ID: <response-${id}>\r\n\r\nHTTP/1.1 ${status} ${status === 200 ? 'OK' : 'Error'}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n${JSON.stringify(answer)}\r\n`);
    }
    return { type: 'multipart/mixed; boundary=batch_pw', text: `${answers.join('')}--batch_pw--\r\n` };
  };

  // --- EC2 ---------------------------------------------------------------------------------------
  const ec2Request = (params: URLSearchParams): [number, string] => {
    const form = Object.fromEntries(params.entries());
    requests.push({ api: 'ec2', method: 'POST', path: '/', query: new URLSearchParams(), body: form });
    const action = form['Action'];
    if (action === 'RunInstances') {
      const raw = Buffer.from(form['UserData'] ?? '', 'base64');
      if (raw.length > ec2UserDataLimit) return [400, ec2Error('InvalidParameterValue', `User data is limited to ${ec2UserDataLimit} bytes`)];
      const min = Number(form['MinCount']);
      const max = Number(form['MaxCount']);
      const spot = form['InstanceMarketOptions.MarketType'] === 'spot';
      const launched = Math.min(max, spot ? state.spotCapacity : max);
      if (launched < min) return [400, ec2Error('InsufficientInstanceCapacity', `There is no Spot capacity available that matches your request (asked for at least ${min})`)];
      const tags: Record<string, string> = {};
      for (let n = 1; form[`TagSpecification.1.Tag.${n}.Key`] !== undefined; n++) tags[form[`TagSpecification.1.Tag.${n}.Key`] as string] = form[`TagSpecification.1.Tag.${n}.Value`] ?? '';
      const userData = (raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw).toString('utf8');
      const made: Ec2Instance[] = [];
      for (let i = 0; i < launched; i++) {
        const id = `i-${(nextId++).toString(16).padStart(17, '0')}`;
        const instance: Ec2Instance = { id, state: 'pending', params: form, tags, userData, userDataBytes: raw.length };
        ec2.set(id, instance);
        made.push(instance);
      }
      return [200, `<RunInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationId>r-${nextId}</reservationId><ownerId>123</ownerId><groupSet/><instancesSet>${made.map(ec2Item).join('')}</instancesSet></RunInstancesResponse>`];
    }
    if (action === 'DescribeInstances') {
      const filters: { name: string; values: string[] }[] = [];
      for (let n = 1; form[`Filter.${n}.Name`] !== undefined; n++) {
        const values: string[] = [];
        for (let v = 1; form[`Filter.${n}.Value.${v}`] !== undefined; v++) values.push(form[`Filter.${n}.Value.${v}`] as string);
        filters.push({ name: form[`Filter.${n}.Name`] as string, values });
      }
      const matches = [...ec2.values()].filter((i) =>
        filters.every((f) => {
          if (f.name === 'instance-state-name') return f.values.includes(i.state);
          if (f.name.startsWith('tag:')) return f.values.includes(i.tags[f.name.slice(4)] ?? '\0');
          return false; // a filter this stand-in does not know matches nothing: a test notices
        }),
      );
      const reservations = matches.length ? `<item><reservationId>r-1</reservationId><ownerId>123</ownerId><groupSet/><instancesSet>${matches.map(ec2Item).join('')}</instancesSet></item>` : '';
      return [200, `<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><reservationSet>${reservations}</reservationSet></DescribeInstancesResponse>`];
    }
    if (action === 'TerminateInstances') {
      const items: string[] = [];
      for (let n = 1; form[`InstanceId.${n}`] !== undefined; n++) {
        const instance = ec2.get(form[`InstanceId.${n}`] as string);
        if (!instance) return [400, ec2Error('InvalidInstanceID.NotFound', `The instance ID '${form[`InstanceId.${n}`]}' does not exist`)];
        const previous = instance.state;
        instance.state = 'shutting-down';
        items.push(`<item><instanceId>${instance.id}</instanceId><currentState><code>32</code><name>shutting-down</name></currentState><previousState><code>0</code><name>${previous}</name></previousState></item>`);
      }
      return [200, `<TerminateInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r</requestId><instancesSet>${items.join('')}</instancesSet></TerminateInstancesResponse>`];
    }
    return [400, ec2Error('InvalidAction', `The action ${action ?? '?'} is not valid for this web service.`)];
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url ?? '/', base);
      try {
        if (url.pathname.startsWith('/batch/')) {
          const answer = batch(String(req.headers['content-type'] ?? ''), text);
          res.writeHead(200, { 'content-type': answer.type });
          res.end(answer.text);
        } else if (url.pathname.startsWith('/compute/')) {
          const [status, answer] = compute(req.method ?? 'GET', url.pathname, url.searchParams, text.trim() ? JSON.parse(text) : undefined);
          res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
          res.end(JSON.stringify(answer));
        } else {
          const [status, xml] = ec2Request(new URLSearchParams(text));
          res.writeHead(status, { 'content-type': 'text/xml;charset=UTF-8' });
          res.end(xml);
        }
      } catch (error) {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String((error as Error).stack));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const closing = registerCleanup(() => server.close(), `close cloud endpoint ${base}`);

  // A private gcloud config: endpoint override, no credentials, no prompts or update checks.
  const gcloudConfig = makeTempDir('gcloud-config');
  mkdirSync(join(gcloudConfig, 'configurations'), { recursive: true });
  writeFileSync(join(gcloudConfig, 'active_config'), 'default');
  writeFileSync(
    join(gcloudConfig, 'configurations', 'config_default'),
    [
      '[api_endpoint_overrides]',
      `compute = ${base}/compute/v1/`,
      '[auth]',
      'disable_credentials = true',
      '[core]',
      'disable_usage_reporting = true',
      'disable_prompts = true',
      '[component_manager]',
      'disable_update_check = true',
      '',
    ].join('\n'),
  );

  return {
    url: base,
    requests,
    gce,
    ec2,
    get spotCapacity() {
      return state.spotCapacity;
    },
    set spotCapacity(value: number) {
      state.spotCapacity = value;
    },
    gcloudEnv: (project = 'pw-test-project') => ({ CLOUDSDK_CONFIG: gcloudConfig, CLOUDSDK_CORE_PROJECT: project }),
    awsEnv: () => ({
      AWS_ENDPOINT_URL: base,
      AWS_ACCESS_KEY_ID: 'AKIDPIECEWORKTEST',
      AWS_SECRET_ACCESS_KEY: 'piecework-test-secret',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_PAGER: '',
    }),
    clear() {
      requests.length = 0;
    },
    close: () => new Promise<void>((resolve) => {
      closing.cancel();
      server.close(() => resolve());
    }),
  };
}

function ec2Item(i: Ec2Instance): string {
  const tags = Object.entries(i.tags).map(([k, v]) => `<item><key>${xml(k)}</key><value>${xml(v)}</value></item>`).join('');
  return `<item><instanceId>${i.id}</instanceId><imageId>${xml(i.params['ImageId'] ?? '')}</imageId><instanceState><code>0</code><name>${i.state}</name></instanceState><instanceType>${xml(i.params['InstanceType'] ?? 'm1.small')}</instanceType><tagSet>${tags}</tagSet></item>`;
}

function ec2Error(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>${code}</Code><Message>${xml(message)}</Message></Error></Errors><RequestID>r</RequestID></Response>`;
}

function gceError(code: number, message: string): unknown {
  return { error: { code, message, errors: [{ message, domain: 'global', reason: code === 404 ? 'notFound' : 'invalid' }] } };
}

function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function splitOnce(text: string, separator: RegExp): [string, string] {
  const match = separator.exec(text);
  if (!match) return [text, ''];
  return [text.slice(0, match.index), text.slice(match.index + match[0].length)];
}

function hashCode(text: string): number {
  let h = 0;
  for (const c of text) h = (h * 31 + c.charCodeAt(0)) | 0;
  return h;
}
