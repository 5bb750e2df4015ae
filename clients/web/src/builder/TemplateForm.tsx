// The template's own fields (id, name, description) and its params.

import { addParam, removeParam, setParamDefault, updateParam, type Draft } from "./draft";
import { CheckField, TextField } from "./fields";
import { under, type Placed } from "./problems";

type Change = (edit: (draft: Draft) => Draft) => void;

export function TemplateFields({ draft, placed, change }: { draft: Draft; placed: Placed; change: Change }) {
  const own = (field: string) => placed.template.get(field);
  return (
    <div className="template-fields" role="group" aria-label="Template">
      <TextField label="Template id" testId="template-id" mono value={draft.id} placeholder="my-template" problems={own("id")}
        onChange={(id) => change((d) => ({ ...d, id }))} />
      <TextField label="Name" testId="template-name" value={draft.name} problems={own("name")}
        onChange={(name) => change((d) => ({ ...d, name }))} />
      <TextField label="Description" testId="template-description" value={draft.description} problems={own("description")}
        onChange={(description) => change((d) => ({ ...d, description }))} />
    </div>
  );
}

export function ParamsEditor({ draft, placed, change }: { draft: Draft; placed: Placed; change: Change }) {
  const problems = placed.template.get("params");
  return (
    <section className="panel" aria-label="Params" data-testid="params-editor">
      <h2>Params</h2>
      <p className="muted small">
        What a run takes; steps read them as <code>{"{{ params.NAME }}"}</code>.
      </p>
      {problems?.map((text) => (
        <p key={text} className="field-problems">{text}</p>
      ))}
      {draft.params.map((param, i) => {
        const found = placed.params.get(param.key);
        return (
          <fieldset key={param.key} className="param" data-testid={`param-${i}`}>
            <div className="row">
              <TextField label="Name" testId={`param-${i}-name`} mono value={param.spec.name} problems={under(found, "name")}
                onChange={(name) => change((d) => updateParam(d, param.key, { name }))} />
              <TextField label="Default (JSON)" testId={`param-${i}-default`} mono value={param.defaultText} placeholder="none"
                problems={under(found, "default_value")}
                onChange={(text) => change((d) => setParamDefault(d, param.key, text))} />
            </div>
            <TextField label="Description" testId={`param-${i}-description`} value={param.spec.description} problems={under(found, "description")}
              onChange={(description) => change((d) => updateParam(d, param.key, { description }))} />
            <div className="buttons">
              <CheckField label="Required" testId={`param-${i}-required`} checked={param.spec.required}
                onChange={(required) => change((d) => updateParam(d, param.key, { required }))} />
              <button type="button" className="link" onClick={() => change((d) => removeParam(d, param.key))} data-testid={`param-${i}-remove`}>
                remove
              </button>
            </div>
          </fieldset>
        );
      })}
      <button type="button" onClick={() => change(addParam)} data-testid="param-add">
        Add param
      </button>
    </section>
  );
}
