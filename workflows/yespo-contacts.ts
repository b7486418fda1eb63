import { yespoPaginateStep } from '../steps/sources/yespo';
import { yespoConfigSchema, yespoTransformStep, yespoWriteStep, type YespoConfig } from '../steps/yespo-steps';
import type { Services } from '../steps/services';
import { defineWorkflow, type SourceSpec } from './engine/define';

/**
 * The workflow shared by the Yespo pipelines (yespo-ovago.ts, yespo-brand-b.ts): the
 * contacts of one group. paginate (a checkpoint after every page), transform (validate + normalise each contact), write the
 * hash `cache:yespo:<brand>:contacts` (field: contact id, value: the contact as JSON).
 */
export const yespoContacts = defineWorkflow<Services, YespoConfig>({
  id: 'yespo-contacts',
  description: 'Yespo group contacts → Redis hash',
  config: yespoConfigSchema,
  steps: [yespoPaginateStep, yespoTransformStep, yespoWriteStep],
});

/** The source of a Yespo pipeline: the API key of its brand. */
export const yespoSource: SourceSpec = {
  kind: 'yespo',
  credential: (c) => (typeof c.brand === 'string' ? `yespo/${c.brand}` : null),
};

/** The seeded config of one brand's contacts pipeline. */
export const yespoConfig = (brand: string, groupId: string) => ({
  brand, groupId, pageSize: 500, ratePerSec: 5, dataset: `yespo:${brand}:contacts`, badRows: { max: 0 },
  check: { allowEmpty: false, minFractionOfLast: 0.5 },
});
