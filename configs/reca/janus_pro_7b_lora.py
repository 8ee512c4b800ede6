# Janus-Pro-7B RecA with LoRA adapters on the LLM, for one 24 GB GPU:
#   python tools/train.py configs/reca/janus_pro_7b_lora.py
# The LLM's weights stay frozen in bfloat16; rank-64 adapters on every
# attention and MLP projection train, with the generation embeddings,
# aligner and head. Exports merge the adapters into the weights. Needs
# peft: pip install 'reca_toolkit[lora]'. A starting point, not a tuned
# recipe. Fits 24 GB by tools/analysis_tools/estimate.py CONFIG --gpu-mem 24.
_base_ = ['./janus_pro_7b.py']

model = dict(umm=dict(
    frozen=['vision_model', 'vqmodel', 'lm_head'],
    lora=dict(r=64, lora_alpha=128, lora_dropout=0.0,
              target_modules=['q_proj', 'k_proj', 'v_proj', 'o_proj',
                              'gate_proj', 'up_proj', 'down_proj'])))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
