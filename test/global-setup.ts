import { buildWeb } from '../web/build';

/** Once per `npm test`: the built /etl page that the api serves in dev (and tests load). */
export default async function setup(): Promise<void> {
  await buildWeb('web/dist');
}
