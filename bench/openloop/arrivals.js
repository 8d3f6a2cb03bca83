// One step of the open-loop bench: arrivals at a constant RATE per second whatever the answers take
// (k6's constant-arrival-rate executor), WARMUP seconds not counted (scenario "warmup"), then
// SECONDS measured (scenario "measure", started when the warm-up's arrivals stop). Every metric
// sample carries its scenario's name, and a threshold on each figure the runner reads keeps the
// measured phase apart in the summary. Run by bench/openloop/run.py, one k6 process per step and
// target:
//   TARGET=issue     POST /v1/coupons/$COUPON_ID/issue, every arrival a new user "$RUN-<phase>-<n>"
//   TARGET=constant  GET /healthz, the same framework answering a constant
// Env: BASE_URLS (space-separated; arrival n goes to the n-th modulo their number), TARGET, RATE,
// WARMUP and SECONDS, MAX_VUS (the most virtual users per phase), TIMEOUT (a request's, in
// seconds), COUPON_ID and RUN (issue), SUMMARY (the JSON file handleSummary writes for the runner).
import http from 'k6/http';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';

const BASE_URLS = (__ENV.BASE_URLS || 'http://127.0.0.1:8080').split(' ').filter((url) => url);
const TARGET = __ENV.TARGET || 'issue';
const RATE = parseInt(__ENV.RATE || '500', 10);
const WARMUP = parseFloat(__ENV.WARMUP || '3');
const SECONDS = parseFloat(__ENV.SECONDS || '8');
const MAX_VUS = parseInt(__ENV.MAX_VUS || '3000', 10);
const TIMEOUT = `${__ENV.TIMEOUT || '10'}s`;
const COUPON_ID = __ENV.COUPON_ID;
const RUN = __ENV.RUN || 'openloop';

if (TARGET !== 'issue' && TARGET !== 'constant') {
    throw new Error(`TARGET must be issue or constant, not ${TARGET}`);
}
if (TARGET === 'issue' && !COUPON_ID) {
    throw new Error('TARGET=issue needs COUPON_ID');
}

// Enough virtual users up front for every arrival to wait 100 ms (the SLO) without k6 making more
// mid-run; up to MAX_VUS when the answers take longer. An arrival that finds all of them busy is
// dropped (dropped_iterations): the generator does not wait for the service.
function arrivals(duration, startTime) {
    return {
        executor: 'constant-arrival-rate', rate: RATE, timeUnit: '1s', duration: `${duration}s`, startTime: `${startTime}s`,
        preAllocatedVUs: Math.min(MAX_VUS, Math.max(50, Math.ceil(RATE / 10))), maxVUs: MAX_VUS,
        // Arrivals in flight when a phase ends are answered, and counted in the phase they arrived in.
        gracefulStop: `${parseInt(__ENV.TIMEOUT || '10', 10) + 5}s`,
    };
}

const scenarios = { measure: arrivals(SECONDS, WARMUP) };
if (WARMUP > 0) {
    scenarios.warmup = arrivals(WARMUP, 0);
}

// Answers by kind: 201 issued (200 for the constant), 200 already held (not expected: every user is
// new), 503 (the database missed its deadline), 0 (no answer: a transport error or the timeout),
// anything else.
const answers = {
    ok: new Counter('answers_ok'),
    held200: new Counter('answers_held'),
    unavailable503: new Counter('answers_503'),
    none: new Counter('answers_none'),
    other: new Counter('answers_other'),
};

// Always true: a threshold makes k6 keep the sub-metric of each phase in the summary.
const thresholds = {};
for (const phase of Object.keys(scenarios)) {
    thresholds[`http_req_duration{scenario:${phase}}`] = ['max>=0'];
    thresholds[`http_reqs{scenario:${phase}}`] = ['count>=0'];
    thresholds[`http_req_failed{scenario:${phase}}`] = ['rate>=0'];
    thresholds[`dropped_iterations{scenario:${phase}}`] = ['count>=0'];
    for (const name of ['answers_ok', 'answers_held', 'answers_503', 'answers_none', 'answers_other']) {
        thresholds[`${name}{scenario:${phase}}`] = ['count>=0'];
    }
}

export const options = {
    scenarios,
    thresholds,
    summaryTrendStats: ['min', 'med', 'p(90)', 'p(99)', 'max', 'count'],
    // Thousands of connections: no time spent on anything the figures do not need.
    discardResponseBodies: true,
};

// 201 issued now, or 200 (a retry's answer, which counts as answered, though no arrival here is a
// retry); the constant answers 200. Anything else and a transport error count in http_req_failed.
http.setResponseCallback(TARGET === 'issue' ? http.expectedStatuses(200, 201) : http.expectedStatuses(200));

// The wall clock when the scenarios start, for the runner to place the measured phase in its CPU
// samples (handleSummary receives it as setup_data).
export function setup() {
    return { started_ms: Date.now() };
}

export default function () {
    const n = exec.scenario.iterationInTest;
    const base = BASE_URLS[n % BASE_URLS.length];
    let response;
    if (TARGET === 'issue') {
        const body = JSON.stringify({ user_id: `${RUN}-${exec.scenario.name}-${n}` });
        response = http.post(`${base}/v1/coupons/${COUPON_ID}/issue`, body,
            { headers: { 'Content-Type': 'application/json' }, tags: { name: 'issue' }, timeout: TIMEOUT });
    } else {
        response = http.get(`${base}/healthz`, { tags: { name: 'healthz' }, timeout: TIMEOUT });
    }
    const status = response.status;
    if (status === 201 || (status === 200 && TARGET === 'constant')) {
        answers.ok.add(1);
    } else if (status === 200) {
        answers.held200.add(1);
    } else if (status === 503) {
        answers.unavailable503.add(1);
    } else if (status === 0) {
        answers.none.add(1);
    } else {
        answers.other.add(1, { status: String(status) });
    }
}

function value(data, metric, stat) {
    const m = data.metrics[metric];
    return m && m.values[stat] !== undefined ? m.values[stat] : 0;
}

export function handleSummary(data) {
    const m = (name) => `${name}{scenario:measure}`;
    const d = (stat) => value(data, m('http_req_duration'), stat).toFixed(2);
    const line = `${TARGET} at ${RATE}/s: ${value(data, m('http_reqs'), 'count')} requests measured, ` +
        `p50 ${d('med')} ms, p99 ${d('p(99)')} ms, max ${d('max')} ms; ` +
        `failed ${value(data, m('http_req_failed'), 'passes')}, dropped ${value(data, m('dropped_iterations'), 'count')}\n`;
    const out = { stdout: line };
    if (__ENV.SUMMARY) {
        out[__ENV.SUMMARY] = JSON.stringify(data, null, 1);
    }
    return out;
}
