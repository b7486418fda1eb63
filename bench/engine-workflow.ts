import { defineWorkflow } from '../workflows/engine/define';
import { defineStep } from '../steps/define';

const noop = (key: string) => defineStep({ key, retry: { attempts: 1 }, run: () => Promise.resolve({ ok: true }) });
export const benchWorkflow = defineWorkflow({ id: 'bench-noop', steps: [noop('fetch'), noop('transform'), noop('write')] });
