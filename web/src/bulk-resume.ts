// "Resume failed runs": a dry run first, so the confirmation shows what would happen
// (SPEC §13): per pipeline only the newest failed run that no newer success superseded.
import { guard } from './access';
import { api } from './api';
import { h } from './dom';
import { confirmDialog, errorMessage, setBusy, toast } from './ui';

function reasons(skipped: { reason: string }[]): string {
  const n = new Map<string, number>();
  for (const s of skipped) n.set(s.reason, (n.get(s.reason) ?? 0) + 1);
  const label: Record<string, string> = { not_newest: 'older than the newest failed run of their pipeline', superseded: 'superseded by a newer success', run_active: 'their pipeline has a run in progress' };
  return [...n].map(([r, c]) => `${c} ${label[r] ?? r}`).join(', ');
}

export function bulkResumeButton(after: () => void): HTMLButtonElement {
  const btn = guard(h('button', { type: 'button', class: 'btn', 'data-testid': 'bulk-resume' }, 'Resume failed runs'));
  btn.addEventListener('click', () => void resume());
  async function resume(): Promise<void> {
    setBusy(btn, true);
    try {
      const dry = await api.bulkResume({ status: ['failed'], dryRun: true });
      if (dry.resumed.length === 0) {
        toast('info', dry.matched === 0 ? 'There are no failed runs.' : `Nothing to resume: ${dry.matched} failed run${dry.matched === 1 ? '' : 's'}, all skipped (${reasons(dry.skipped)}).`);
        return;
      }
      const message = `${dry.matched} failed run${dry.matched === 1 ? '' : 's'} match. ${dry.resumed.length} will be resumed (the newest per pipeline)` +
        (dry.skipped.length ? `; ${dry.skipped.length} skipped: ${reasons(dry.skipped)}.` : '.');
      if (!(await confirmDialog({ title: `Resume ${dry.resumed.length} failed run${dry.resumed.length === 1 ? '' : 's'}?`, message, okLabel: 'Resume' }))) return;
      const r = await api.bulkResume({ status: ['failed'] });
      toast('ok', `Resumed ${r.resumed.length} run${r.resumed.length === 1 ? '' : 's'}${r.skipped.length ? `, skipped ${r.skipped.length}` : ''}.`);
      after();
    } catch (err) {
      toast('error', errorMessage(err));
    } finally {
      setBusy(btn, false);
    }
  }
  return btn;
}
