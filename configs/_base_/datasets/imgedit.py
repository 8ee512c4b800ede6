# ImgEdit single-turn (737 edits) with the RecA protocol: seed 42, one
# edit each, judged by gpt-4o-2024-08-06 (the RecA repository switched to
# gpt-4.1-2025-04-14 after the paper). Files under data/imgedit; the model
# config adds the understanding view (test_dataloader.dataset.pipeline).
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(type='ImgEditSet',
                 annotation='data/imgedit/singleturn/singleturn.json',
                 image_root='data/imgedit/singleturn', seed=42))
test_evaluator = dict(
    type='ImgEditMetric',
    judge_prompts='data/imgedit/singleturn/judge_prompt.json',
    out_dir='work_dirs/imgedit',
    judge=dict(type='OpenAICompatibleJudge', model='gpt-4o-2024-08-06',
               base_url='https://api.openai.com/v1',
               api_key_env='OPENAI_API_KEY', temperature=0.0))
test_cfg = dict(type='TestLoop')
