# WISE (1,000 prompts) with the RecA protocol: 1 image per prompt, seed 0,
# judged by gpt-4o-2024-05-13 at temperature 0 with max_tokens 2000. The
# prompts and the judge protocol come from the user (data/wise).
test_dataloader = dict(
    batch_size=1,
    num_workers=2,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='reca_toolkit.collate_by_source'),
    dataset=dict(type='WISEPrompts', files='data/wise/final_data.json',
                 num_images=1, seed=0, seed_policy='constant'))
test_evaluator = dict(
    type='WISEMetric',
    template='data/wise/judge_template.txt',
    out_dir='work_dirs/wise',
    judge=dict(type='OpenAICompatibleJudge', model='gpt-4o-2024-05-13',
               base_url='https://api.openai.com/v1',
               api_key_env='OPENAI_API_KEY', temperature=0.0,
               max_tokens=2000, system_prompt=None))
test_cfg = dict(type='TestLoop')
