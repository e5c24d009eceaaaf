package inject

// phraseTable lists, by feature, the phrases of words (lowered) that mark it. Up to two
// other words may come between two words of a phrase; "*" is any one word; "<dest>" is an
// e-mail address, a URL or a domain.
var phraseTable = map[string][]string{
	Override: {
		"ignore previous instructions", "ignore prior instructions", "ignore above instructions",
		"ignore earlier instructions", "ignore your instructions", "ignore the instructions above",
		"ignore previous directions", "ignore all instructions", "ignore your guidelines",
		"ignore everything above", "ignore everything before", "ignore the above",
		"disregard previous", "disregard prior", "disregard your", "disregard the above", "disregard all",
		"disregard earlier", "disregard everything", "disregard any", "forget previous instructions", "forget your instructions",
		"forget everything", "forget all previous", "override your instructions", "override previous instructions",
		"new instructions", "updated instructions follow", "your new task", "your real task", "your actual task", "your real objective", "your new objective",
		"your goal is now", "update to your instructions", "your task has changed", "your instructions have changed",
		"you are now", "from now on you", "stop what you are doing", "instead of summarizing", "instead of answering",
		"do not follow the user", "not follow your original", "system override", "developer mode",
		// the same in the languages the data around it may be written in
		"ignoriere alle vorherigen anweisungen", "ignoriere die vorherigen anweisungen", "vergiss alle anweisungen",
		"ignore les instructions précédentes", "ignorez les instructions précédentes", "oublie tes instructions",
		"ignora las instrucciones anteriores", "ignora todas las instrucciones", "olvida tus instrucciones",
		"ignora le istruzioni precedenti", "ignore as instruções anteriores", "negeer alle vorige instructies",
	},
	Addressed: {
		"dear assistant", "dear ai", "hey assistant", "attention assistant", "attention ai",
		"attention agent", "to the assistant", "to the ai", "to any ai", "to the agent", "to the model",
		"agents reading this", "agents processing this", "ai agent reading", "ai reading this", "assistant only", "for the assistant", "language model reading", "llm reading", "assistant reading this",
		"if you are an ai", "if you are an assistant", "if you are a language model", "if you are an llm",
		"if you are an agent", "you are an ai", "as an ai", "note to ai", "note for the assistant",
		"message for the ai", "message to the assistant", "instructions for the assistant", "instructions for ai",
		"assistant you", "agent you", "claude you", "chatgpt you", "gpt you", "copilot you",
		"an die ki", "lieber assistent", "à l'assistant", "cher assistant", "al asistente", "querido asistente",
	},
	Imperative: {
		"you must", "you should now", "you need to", "you are required", "you have to", "you will now",
		"you are instructed", "requires you to", "you are to", "you shall", "make sure you", "immediately send", "immediately forward",
		"do it now", "do this now", "now send", "now forward", "now email", "now call", "now run",
		"du musst", "vous devez", "debes", "tienes que", "devi",
	},
	Authority: {
		"system notice", "system message", "system alert", "security team", "security notice", "admin notice",
		"from the administrator", "administrator requires", "it department", "compliance requirement",
		"mandatory", "urgent", "immediately", "critical update", "highest priority", "top priority",
		"authorized by", "this is an official", "official instruction", "by order of",
	},
	TaskRef: {
		"your task", "your instructions", "your goal", "your objective", "your system prompt",
		"your original instructions", "your previous instructions", "your guidelines", "your mission",
		"your current task", "the user's request", "complete the task", "finish the task",
		"deine aufgabe", "votre tâche", "ta tâche", "tu tarea", "il tuo compito",
	},
	Exfiltration: {
		"send * to <dest>", "send to <dest>", "forward * to <dest>", "forward to <dest>", "email * to <dest>",
		"e mail * to <dest>", "mail * to <dest>", "transfer * to <dest>", "post * to <dest>", "upload * to <dest>",
		"copy * to <dest>", "share * with <dest>", "cc <dest>", "bcc <dest>", "exfiltrate",
		"send the conversation", "send the chat history", "send the contents", "send all", "forward all",
		"forward every", "call the * tool", "use the * tool", "invoke the", "run the command",
		"execute the command", "execute the following", "run the following", "fetch <dest>", "visit <dest>",
		"open <dest>", "transfer funds", "transfer the funds", "send money", "send payment",
		"sende * an <dest>", "envoie * à <dest>", "envía * a <dest>", "invia * a <dest>",
	},
	UserFramed: {
		"the user says", "the user wants you", "the user asked you", "the user has asked you", "the user requests",
		"the user has requested", "the user would like you", "the user instructs", "the user authorized",
		"the user has authorized", "the user approved", "the user has approved", "user wants you",
		"on behalf of the user", "message from the user", "the user told", "user's real request",
		"the user also wants", "der nutzer möchte", "l'utilisateur veut", "el usuario quiere",
	},
	Prerequisite: {
		"before you can complete", "before you can finish", "before you can continue", "before you can answer",
		"before you can proceed", "before you complete", "before you finish", "before you respond",
		"before you answer", "before you summarize", "before you reply", "before completing", "before proceeding",
		"before responding", "before answering", "in order to finish", "in order to complete",
		"in order to continue", "in order to proceed", "to complete this task", "to finish this task",
		"required step", "first you must", "you must first", "you need to first", "first step is to",
		"prerequisite", "bevor du", "avant de répondre", "antes de responder",
	},
	Secrecy: {
		"do not tell the user", "don't tell the user", "do not inform the user", "don't inform the user",
		"do not mention", "don't mention", "without telling", "without mentioning", "without informing",
		"without asking", "without confirmation", "do not ask", "don't ask", "never mention", "silently",
		"secretly", "quietly", "do not reveal this", "keep this hidden", "hide this", "not visible to the user",
		"do not show", "don't show", "the user must not", "the user should not know", "sag dem nutzer nichts",
		"ne dis rien", "no le digas",
	},
	Discussion: {
		"prompt injection", "prompt injections", "injection attack", "injection attacks", "attackers",
		"an attacker", "researchers", "red team", "for example the phrase", "such as the phrase",
		"jailbreak", "jailbreaks", "phishing", "security awareness", "how to defend", "how to protect",
		"mitigation", "mitigations",
	},
}
