"""The Retrain dialog's UI strings in Chinese and English, looked up through :mod:`app.i18n`.

``Text("zh")("start")`` returns the Chinese string; ``assets/strings_<lang>.json`` may override
any key as ``retrain.<key>`` (app.i18n's prefix convention), so the catalogue stays the one
source of truth for translators while the dialog's own table keeps it complete in both
languages. No tkinter here.
"""
from __future__ import annotations

from app.i18n import fill

#: key -> (zh, en)
TEXT = {
    "title": ("重新训练（GRPO）", "Retrain (GRPO)"),
    "setup": ("训练设置", "Setup"), "recipe": ("配方", "Recipe"), "model": ("基础模型", "Base model"),
    "dataset": ("数据集", "Dataset"), "local": ("本地文件…", "Local file…"),
    "steps": ("步数", "Steps"), "epochs": ("轮数", "Epochs"), "lora": ("LoRA 适配器", "LoRA adapter"),
    "run_name": ("运行名称", "Run name"), "start": ("开始训练", "Start"), "stop": ("停止", "Stop"),
    "resume": ("继续训练", "Resume"),
    "loading": ("正在载入…", "Loading…"),
    "gpu_check": ("正在检测 GPU…", "Checking the GPU…"),
    "gpu": ("GPU：{name}，空闲显存 {free} MB / {total} MB", "GPU: {name}, {free} MB free of {total} MB"),
    "no_gpu": ("未检测到 CUDA GPU：只能运行 CPU 冒烟配方（验证流程，不会提升模型）。",
               "No CUDA GPU found: only the CPU smoke recipes can run (they prove the pipeline; "
               "they do not improve the model)."),
    "idle": ("尚未开始", "No run yet"), "progress": ("第 {step} / {total} 步", "Step {step} / {total}"),
    "eta": ("剩余约 {eta}", "about {eta} left"),
    "status": ("运行 {name}：{status}", "Run {name}: {status}"),
    "sample": ("最新样本", "Latest completion"), "log": ("训练日志", "Trainer log"),
    "log_details": ("显示全部输出（警告、进度条）", "Show all output (warnings, progress bars)"),
    "sample_head": ("第 {step} 步 · 奖励 {reward}", "step {step} · reward {reward}"),
    "compare": ("对比（留出的测试题，训练从未见过）", "Compare (held-out questions, never seen in training)"),
    "limit": ("题数", "Questions"),
    "questions": ("题数（95% 区间：Wilson）", "questions (95 % interval: Wilson)"),
    "stopping_after": ("第 {step} 步结束后停止…（最多等 {wait}）", "stopping after step {step}… (waiting up to {wait})"),
    "stop_why": ("停止原因：{detail}", "Why it stopped: {detail}"),
    "evaluate": ("评估", "Evaluate"), "use": ("使用此模型", "Use this model"),
    "metric": ("指标", "Metric"), "base": ("基础", "Base"), "trained": ("训练后", "Trained"),
    "history": ("历史运行", "Run history"),
    "evaluating": ("正在评估基础模型与训练后模型…", "Evaluating base and trained model…"),
    "adopted": ("已启用 {name}：下一个回答将由它生成。", "Now answering with {name}."),
    "adopted_slow": ("已启用 {name}，但它只能在较慢的 transformers 后端上运行：{why}",
                     "Now answering with {name}, on the slower transformers backend: {why}"),
    "no_ckpt": ("这个运行没有检查点可用。", "This run has no checkpoint to use."),
    "keeps_running": ("训练仍在后台运行；重新打开此窗口即可继续查看。",
                      "Training keeps running in the background; reopen this dialog to follow it."),
    "error": ("出错", "Error"),
    "starting": ("启动中", "starting"), "running": ("训练中", "running"),
    "stopping": ("停止中…", "stopping…"), "stopped": ("已停止", "stopped"),
    "finished": ("已完成", "finished"), "failed": ("失败", "failed"),
    # what to train on
    "source": ("训练内容", "Train on"),
    "source_kb": ("我的知识库「{kb}」", "my knowledge base «{kb}»"),
    "source_gsm8k": ("gsm8k-chinese（数学推理）", "gsm8k-chinese (math reasoning)"),
    "source_both": ("两者（数据混合）", "both (data mix)"),
    "kb": ("知识库", "Knowledge base"), "mix_ratio": ("数学题比例", "Math share"),
    "build_tasks": ("生成训练题", "Build tasks"), "rebuild_tasks": ("重新生成", "Rebuild"),
    "tasks_none": ("还没有训练题：点击「生成训练题」，从知识库的文档中自动出题（含答案与出处）。",
                   "No tasks yet: Build tasks makes questions with answers and sources from the "
                   "knowledge base's documents."),
    "tasks_building": ("正在生成训练题… {done} / {total}", "Building tasks… {done} / {total}"),
    "tasks_reading": ("正在读取知识库…", "Reading the knowledge base…"),
    "tasks_summary": ("{tasks} 道题，来自 {documents} 个文档：训练 {train}，留出测试 {heldout}；"
                      "其中 {refusal} 道应回答「资料中没有」。类型：{kinds}",
                      "{tasks} tasks from {documents} documents: {train} train, {heldout} held-out; "
                      "{refusal} should be answered “not in the sources”. Kinds: {kinds}"),
    "tasks_needed": ("请先生成训练题。", "Build the tasks first."),
    "tasks_failed": ("生成训练题失败：{error}", "Building tasks failed: {error}"),
    "no_kb": ("还没有知识库：先在主窗口添加文档。", "No knowledge base yet: add documents in the main window first."),
    "example_refusal": ("（应拒答）", "(refusal)"),
    "example": ("[{kind}] {question}\n    → {answer}", "[{kind}] {question}\n    → {answer}"),
    # plots and tables
    "mean_reward": ("平均奖励", "mean reward"), "eval_accuracy": ("验证准确率", "eval accuracy"),
    "step": ("步", "step"), "total": ("总分", "total"), "no_data": ("尚无数据", "no data yet"),
    "run": ("运行", "run"), "col_status": ("状态", "status"), "col_steps": ("步数", "steps"),
    "col_reward": ("奖励", "reward"), "col_best_acc": ("最佳验证", "best eval"), "col_strict": ("测试结果", "test"),
    "col_model": ("模型", "model"), "col_started": ("开始时间", "started"),
    "m_strict": ("严格准确率", "strict accuracy"), "m_lenient": ("宽松准确率", "lenient accuracy"),
    "m_format_rate": ("格式正确率", "format rate"),
    "m_correct": ("答对", "correct"), "m_cited_right": ("引用正确", "cited right"),
    "m_refused_right": ("该拒答时拒答", "refused right"), "m_over_refusal": ("误拒答", "refused wrongly"),
    "m_format": ("格式正确", "format"),
    "r_grounded_answer": ("答案", "answer"), "r_citation": ("引用", "citation"), "r_refusal": ("拒答", "refusal"),
    "r_answer_format": ("格式", "format"), "r_correctness": ("数学正确", "math correct"),
    "r_strict_format": ("严格格式", "strict format"), "r_soft_format": ("宽松格式", "soft format"),
    "r_language": ("语言一致", "language"),
    # bundled recipes, per language (the YAML description is the fallback)
    "recipe_smoke-cpu": ("CPU 冒烟：几分钟验证流程（数学题），不会提升模型", "CPU smoke: proves the pipeline in "
                         "minutes (math), does not improve the model"),
    "recipe_tqts-default": ("GPU：LoRA，每题 16 个回答，数学推理", "GPU: LoRA, 16 completions per question, math reasoning"),
    "recipe_grounded-cpu-smoke": ("CPU 冒烟：知识库问答两阶段各 2 步，验证流程，不会提升模型",
                                  "CPU smoke: 2 + 2 grounded steps in two stages; proves the pipeline, "
                                  "does not improve the model"),
    "recipe_grounded-kb": ("GPU：知识库问答，先学回答与引用，再加入拒答（LoRA，100 步）",
                           "GPU: knowledge-base answers, first answer + cite, then refusal (LoRA, 100 steps)"),
}


class Text:
    """``t(key, **fields)``: the string in ``lang`` ("zh" or anything else: English), with
    ``retrain.<key>`` of app.i18n's catalogue winning when it has one."""

    def __init__(self, lang: str):
        self.lang = 0 if lang == "zh" else 1
        try:
            from app.i18n import Strings

            self._strings = Strings(lang)
        except ImportError:  # the catalogue is optional: TEXT is complete
            self._strings = None

    def __call__(self, key: str, **kw) -> str:
        text = TEXT[key][self.lang] if key in TEXT else key
        if self._strings is not None:
            override = self._strings(f"retrain.{key}")
            text = text if override == f"retrain.{key}" else override
        return fill(text, kw)

    def has(self, key: str) -> bool:
        return key in TEXT

    def reward(self, name: str) -> str:
        """A reward function's name in the UI language (its registry name when unknown)."""
        if name == "reward":
            return self("total")
        return self(f"r_{name}") if f"r_{name}" in TEXT else name

    def recipe(self, name: str, fallback: str) -> str:
        """A bundled recipe's description in the UI language, else ``fallback`` (the YAML's)."""
        return self(f"recipe_{name}") if f"recipe_{name}" in TEXT else fallback
