// The admin panel, shown to a session whose token carries the admin or
// publisher role: send a notification (admin) and record a KPI value (admin
// or publisher). The roles are read from the token only to decide what to
// show; the server checks them on every request, and its errors are shown
// next to the form with their code.

import { $, element, errorText, sentence, showMessage, tokenRoles } from './ui.js';

const SEND_NOTIFICATION_MUTATION = `mutation SendNotification($input: NotificationInput!) {
  sendNotification(input: $input) { id title broadcast }
}`;

const RECORD_KPIS_MUTATION = `mutation RecordKPIs($inputs: [KPIInput!]!) {
  recordKPIs(inputs: $inputs) { module key label value unit change relativeChange updatedAt }
}`;

/** A form field's value, trimmed; null when empty. */
function optional(input) {
  const value = input.value.trim();
  return value === '' ? null : value;
}

/**
 * Sets up the admin panel.
 *
 * @param {object} options
 * @param {object} options.client the page's client (see client.js)
 * @param {() => (object|null)} options.getSession the current session, or null
 * @param {(kpis: object[]) => void} [options.onKPIsRecorded] values this panel recorded
 * @param {(notice: string) => void} options.onUnauthenticated the server
 *   refused the session's token; the page should forget it
 * @returns {{sessionChanged: () => void, connectionChanged: () => void,
 *   setModules: (modules: string[]) => void}} setModules offers these
 *   modules in the KPI form
 */
export function createAdmin({ client, getSession, onKPIsRecorded = () => {}, onUnauthenticated }) {
  const el = {
    panel: $('admin-panel'),
    roles: $('admin-roles'),
    notifyForm: $('notify-form'),
    notifyUser: $('notify-user'),
    notifyTitle: $('notify-title'),
    notifyBody: $('notify-body'),
    notifyLevel: $('notify-level'),
    notifyLink: $('notify-link'),
    notifySend: $('notify-send'),
    notifyResult: $('notify-result'),
    notifyError: $('notify-error'),
    kpiForm: $('kpi-form'),
    kpiModule: $('kpi-module'),
    kpiModules: $('kpi-modules'),
    kpiKey: $('kpi-key'),
    kpiValue: $('kpi-value'),
    kpiLabel: $('kpi-label'),
    kpiUnit: $('kpi-unit'),
    kpiRecord: $('kpi-record'),
    kpiResult: $('kpi-result'),
    kpiError: $('kpi-error'),
  };

  /**
   * Runs a form's action with its button disabled, showing the action's
   * result text or the server's error (code and message) under the form.
   */
  function handle(form, button, resultNode, errorNode, action) {
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (button.disabled) return;
      button.disabled = true;
      showMessage(resultNode, '');
      showMessage(errorNode, '');
      try {
        showMessage(resultNode, await action());
      } catch (err) {
        showMessage(errorNode, errorText(err));
        if (err.code === 'UNAUTHENTICATED') onUnauthenticated(`${sentence(err.message)} Sign in again.`);
      } finally {
        button.disabled = false;
      }
    });
  }

  handle(el.notifyForm, el.notifySend, el.notifyResult, el.notifyError, async () => {
    const input = {
      title: el.notifyTitle.value,
      body: el.notifyBody.value,
      level: el.notifyLevel.value,
    };
    const userId = optional(el.notifyUser);
    const link = optional(el.notifyLink);
    if (userId !== null) input.userId = userId;
    if (link !== null) input.link = link;
    const data = await client.write(SEND_NOTIFICATION_MUTATION, { input });
    const sent = data.sendNotification;
    el.notifyTitle.value = '';
    el.notifyBody.value = '';
    el.notifyLink.value = '';
    return `Sent notification #${sent.id} to ${sent.broadcast ? 'everyone' : `user #${userId}`}.`;
  });

  handle(el.kpiForm, el.kpiRecord, el.kpiResult, el.kpiError, async () => {
    const raw = el.kpiValue.value.trim();
    const value = Number(raw);
    if (raw === '' || !Number.isFinite(value)) throw new Error('The value must be a number.');
    const input = { module: el.kpiModule.value.trim(), key: el.kpiKey.value.trim(), value };
    const label = optional(el.kpiLabel);
    const unit = optional(el.kpiUnit);
    if (label !== null) input.label = label;
    if (unit !== null) input.unit = unit;
    const data = await client.write(RECORD_KPIS_MUTATION, { inputs: [input] });
    onKPIsRecorded(data.recordKPIs);
    el.kpiValue.value = '';
    const kpi = data.recordKPIs[0];
    return `Recorded ${kpi.module}/${kpi.key} = ${kpi.value}.`;
  });

  let token = null; // the session's, when the panel was last set up

  function sessionChanged() {
    const session = getSession();
    if (token !== null && token === (session && session.token)) return;
    token = session ? session.token : null;
    const roles = session ? tokenRoles(session.token) : [];
    const admin = roles.includes('admin');
    const publisher = admin || roles.includes('publisher');
    el.panel.hidden = !publisher;
    el.notifyForm.hidden = !admin;
    el.kpiForm.hidden = !publisher;
    el.roles.textContent = roles.join(', ');
    for (const node of [el.notifyResult, el.notifyError, el.kpiResult, el.kpiError]) showMessage(node, '');
  }

  function setModules(modules) {
    el.kpiModules.replaceChildren(
      ...modules.map((module) => {
        const option = element('option');
        option.value = module;
        return option;
      }),
    );
  }

  sessionChanged();

  return { sessionChanged, connectionChanged: () => {}, setModules };
}
