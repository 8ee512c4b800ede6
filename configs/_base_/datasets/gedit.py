# GEdit-Bench EN (606 edits) with the RecA protocol: seed 42, judged by
# VIEScore on gpt-4.1-2025-04-14 (the RecA fork's "gpt4o" backbone). The
# exported dataset and the VIEScore prompt files come from the user
# (data/gedit); the model config adds the understanding view.
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(type='GEditSet', annotation='data/gedit/gedit.jsonl',
                 image_root='data/gedit', language='en', seed=42))
test_evaluator = dict(
    type='GEditMetric',
    sc_template='data/gedit/viescore_sc.txt',
    pq_template='data/gedit/viescore_pq.txt',
    out_dir='work_dirs/gedit',
    judge=dict(type='OpenAICompatibleJudge', model='gpt-4.1-2025-04-14',
               base_url='https://api.openai.com/v1',
               api_key_env='OPENAI_API_KEY', temperature=0.0))
test_cfg = dict(type='TestLoop')
