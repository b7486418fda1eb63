import { definePipeline } from './engine/define';
import { yespoConfig, yespoContacts, yespoSource } from './yespo-contacts';

/** Yespo contacts of the OVAGO group → the hash `cache:yespo:OVAGO:contacts`. */
export const yespoOvago = definePipeline({
  id: 'yespo.OVAGO',
  description: 'Yespo contacts of the OVAGO group → Redis cache',
  cron: '0 4 * * *',
  timezone: 'Europe/Kyiv',
  source: yespoSource,
  workflow: yespoContacts,
  config: yespoConfig('OVAGO', '1001'),
});
