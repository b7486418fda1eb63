import { definePipeline } from './engine/define';
import { yespoConfig, yespoContacts, yespoSource } from './yespo-contacts';

/** Yespo contacts of brand B (another group and API key) → `cache:yespo:brand_b:contacts`. */
export const yespoBrandB = definePipeline({
  id: 'yespo.brand_b',
  description: 'Yespo contacts of brand B → Redis cache',
  cron: '30 4 * * *',
  timezone: 'Europe/Kyiv',
  source: yespoSource,
  workflow: yespoContacts,
  config: yespoConfig('brand_b', '2002'),
});
